// The technician's console: draws what rejnet-viewer sends, forwards keyboard and mouse.
// The server decides what to draw (changed rectangles, raw RGBA); this page only paints them,
// shows the session's facts, and turns browser input into X keysyms and RFB pointer events.
"use strict";

// ------------------------------------------------------------------ texts (Polish and English)

const TEXTS = {
  en: {
    title: "Remote support – technician's console", session: "Session", safety_code: "Safety code – compare by phone",
    safety_hint: "Compare it with the customer by phone: it must be the same on both screens",
    connection: "Connection", access: "Customer's permission", link: "Link", fps: "frames/s",
    fit: "Fit to window", special_keys: "Send keys…", windows_key: "Windows key",
    end_session: "End session", end_confirm: "End the support session for you and the customer?",
    waiting_screen: "Waiting for the customer's screen…",
    connecting: "connecting", active: "active", reconnecting: "reconnecting", ended: "ended",
    scope_control: "control", scope_view: "view only", scope_unknown: "set by the customer",
    scope_now_control: "The customer allowed you to control their computer.",
    scope_now_view: "The customer changed your access to view only: your keyboard and mouse are not sent.",
    ended_because: "Session ended: ", reconnecting_because: "Reconnecting: ",
    lost: "The console lost its connection to rejnet-viewer.",
    elsewhere: "The customer's screen is now shown in another VNC viewer on this computer (the newest window " +
      "wins). Your keyboard and mouse are not sent from this page.",
    show_here: "Show it here",
  },
  pl: {
    title: "Pomoc zdalna – konsola technika", session: "Sesja", safety_code: "Kod bezpieczeństwa – porównaj przez telefon",
    safety_hint: "Porównaj go z klientem przez telefon: na obu ekranach musi być taki sam",
    connection: "Połączenie", access: "Uprawnienia od klienta", link: "Łącze", fps: "klatek/s",
    fit: "Dopasuj do okna", special_keys: "Wyślij klawisze…", windows_key: "Klawisz Windows",
    end_session: "Zakończ sesję", end_confirm: "Zakończyć sesję pomocy dla Ciebie i klienta?",
    waiting_screen: "Czekam na ekran klienta…",
    connecting: "łączenie", active: "aktywne", reconnecting: "wznawianie", ended: "zakończone",
    scope_control: "sterowanie", scope_view: "tylko podgląd", scope_unknown: "ustala klient",
    scope_now_control: "Klient pozwolił Ci sterować swoim komputerem.",
    scope_now_view: "Klient zmienił Twój dostęp na tylko podgląd: klawiatura i mysz nie są przesyłane.",
    ended_because: "Sesja zakończona: ", reconnecting_because: "Wznawianie połączenia: ",
    lost: "Konsola straciła połączenie z rejnet-viewer.",
    elsewhere: "Ekran klienta jest teraz pokazywany w innym programie VNC na tym komputerze (wygrywa najnowsze " +
      "okno). Klawiatura i mysz z tej strony nie są przesyłane.",
    show_here: "Pokaż tutaj",
  },
};
const LANG = (navigator.languages || [navigator.language || "en"])
  .map((l) => String(l).slice(0, 2).toLowerCase()).find((l) => l in TEXTS) || "en";
const T = TEXTS[LANG];

function translate() {
  document.documentElement.lang = LANG;
  document.title = T.title;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = T[el.dataset.t];
  for (const el of document.querySelectorAll("[data-t-title]")) el.title = T[el.dataset.tTitle];
}

// ------------------------------------------------------------------ keysyms (X11 keysymdef.h)

const KEY_BY_CODE = {
  ShiftLeft: 0xffe1, ShiftRight: 0xffe2, ControlLeft: 0xffe3, ControlRight: 0xffe4,
  AltLeft: 0xffe9, AltRight: 0xfe03, MetaLeft: 0xffeb, MetaRight: 0xffec, OSLeft: 0xffeb, OSRight: 0xffec,
  CapsLock: 0xffe5, NumLock: 0xff7f, ScrollLock: 0xff14,
};
const KEY_BY_NAME = {
  Backspace: 0xff08, Tab: 0xff09, Enter: 0xff0d, Escape: 0xff1b, Delete: 0xffff, Insert: 0xff63,
  Home: 0xff50, End: 0xff57, PageUp: 0xff55, PageDown: 0xff56,
  ArrowLeft: 0xff51, ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54,
  ContextMenu: 0xff67, PrintScreen: 0xff61, Pause: 0xff13,
  Shift: 0xffe1, Control: 0xffe3, Alt: 0xffe9, AltGraph: 0xfe03, Meta: 0xffeb,
};
for (let n = 1; n <= 12; n++) KEY_BY_NAME["F" + n] = 0xffbe + n - 1;
const XK = { ctrl: 0xffe3, alt: 0xffe9, del: 0xffff, super: 0xffeb, tab: 0xff09, f4: 0xffc1, print: 0xff61 };

function keysymOf(e) {
  if (e.code in KEY_BY_CODE) return KEY_BY_CODE[e.code];
  if (e.key in KEY_BY_NAME) return KEY_BY_NAME[e.key];
  const chars = Array.from(e.key || "");
  if (chars.length !== 1) return null; // "Dead", "Unidentified", composed sequences
  const cp = chars[0].codePointAt(0);
  return cp >= 0x20 && cp <= 0xff ? cp : 0x01000000 + cp; // Latin-1 keysyms, else Unicode keysyms
}

// ------------------------------------------------------------------ the page's parts

const $ = (id) => document.getElementById(id);
const canvas = $("screen");
const ctx = canvas.getContext("2d", { alpha: false });
const view = $("view");
let ws = null;
let state = { state: "connecting", input: false, scope: null, scope_reported: false };
let lastScope;           // the scope the page last showed (undefined: none shown yet)
const pressed = new Map(); // event.code -> keysym held down
let buttons = 0;
let wheelRest = 0;
// For measurements (benchmarks/linkbench): when the last rectangle was painted.
window.rejnetConsole = { paints: 0, lastPaint: 0 };

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = "ws:";
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (m) => (typeof m.data === "string" ? onState(JSON.parse(m.data)) : onPixels(m.data));
  ws.onclose = () => {
    if (state.state !== "ended") showNotice(T.lost, "ended");
    setEnded();
  };
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

// ------------------------------------------------------------------ drawing

function onPixels(buf) {
  const dv = new DataView(buf);
  const kind = dv.getUint8(0);
  if (kind === 2) {
    canvas.width = dv.getUint16(1);
    canvas.height = dv.getUint16(3);
    $("placeholder").hidden = canvas.width > 0;
    layout();
  } else if (kind === 1) {
    const x = dv.getUint16(1), y = dv.getUint16(3), w = dv.getUint16(5), h = dv.getUint16(7);
    ctx.putImageData(new ImageData(new Uint8ClampedArray(buf, 9, w * h * 4), w, h), x, y);
    window.rejnetConsole.paints++;
    window.rejnetConsole.lastPaint = performance.now();
  }
}

function layout() {
  const fit = $("fit").checked;
  view.classList.toggle("fit", fit);
  if (!fit || !canvas.width) {
    canvas.style.width = canvas.style.height = "";
    return;
  }
  const scale = Math.min(view.clientWidth / canvas.width, view.clientHeight / canvas.height);
  canvas.style.width = Math.floor(canvas.width * scale) + "px";
  canvas.style.height = Math.floor(canvas.height * scale) + "px";
}

// ------------------------------------------------------------------ session facts

function onState(s) {
  const previous = state;
  state = s;
  $("session").textContent = s.session;
  $("safety").textContent = s.safety_code || "····";
  const st = $("state");
  st.dataset.state = s.state;
  st.textContent = T[s.state] || s.state;
  const scope = s.scope_reported ? s.scope : undefined;
  $("scope").dataset.scope = scope || "";
  $("scope").textContent = scope === "control" ? T.scope_control : scope === "view" ? T.scope_view : T.scope_unknown;
  const fmt = (v, digits) => (v === null || v === undefined ? "–" : v.toFixed(digits));
  $("rtt").textContent = fmt(s.link.rtt_ms, 0);
  $("kbit").textContent = fmt(s.link.kbit_s, 0);
  $("fps").textContent = fmt(s.link.fps, 0);
  canvas.classList.toggle("noinput", !s.input);
  $("keys").disabled = !s.input;
  if (s.state === "ended") {
    showNotice(T.ended_because + (s.reason || ""), "ended");
    setEnded();
  } else if (s.state === "reconnecting") {
    showNotice(T.reconnecting_because + (s.reason || ""), "");
  } else if (previous.state === "reconnecting") {
    hideNotice();
  }
  if (s.state !== "ended" && lastScope !== undefined && scope !== lastScope && scope) {
    showNotice(scope === "control" ? T.scope_now_control : T.scope_now_view, "info");
  }
  if (scope) lastScope = scope;
  $("elsewhere").hidden = !s.elsewhere || s.state === "ended";
  if (!s.input) releaseAll();
}

function showNotice(text, kind) {
  const n = $("notice");
  n.textContent = text;
  n.className = kind;
  n.hidden = false;
}

function hideNotice() {
  $("notice").hidden = true;
}

function setEnded() {
  $("end").disabled = true;
  $("keys").disabled = true;
  const st = $("state");
  st.dataset.state = "ended";
  st.textContent = T.ended;
}

// ------------------------------------------------------------------ input

function key(keysym, down) {
  if (state.input) send({ t: "k", s: keysym, d: down });
}

function releaseAll() {
  for (const keysym of pressed.values()) send({ t: "k", s: keysym, d: false });
  pressed.clear();
  if (buttons) {
    buttons = 0;
    send({ t: "p", x: 0, y: 0, b: 0 });
  }
}

canvas.addEventListener("keydown", (e) => {
  e.preventDefault();
  if (!state.input) return;
  const keysym = keysymOf(e);
  if (keysym === null) return;
  pressed.set(e.code || e.key, keysym);
  key(keysym, true);
});

canvas.addEventListener("keyup", (e) => {
  e.preventDefault();
  const id = e.code || e.key;
  const keysym = pressed.get(id);
  if (keysym === undefined) return;
  pressed.delete(id);
  send({ t: "k", s: keysym, d: false });
});

canvas.addEventListener("blur", releaseAll);

function position(e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) * canvas.width) / r.width);
  const y = Math.floor(((e.clientY - r.top) * canvas.height) / r.height);
  return { x: Math.max(0, Math.min(canvas.width - 1, x)), y: Math.max(0, Math.min(canvas.height - 1, y)) };
}

function rfbButtons(b) { // browser: 1 left, 2 right, 4 middle; RFB: 1 left, 2 middle, 4 right
  return (b & 1) | (b & 4 ? 2 : 0) | (b & 2 ? 4 : 0);
}

function pointer(e) {
  if (!state.input || !canvas.width) return;
  buttons = rfbButtons(e.buttons);
  const p = position(e);
  send({ t: "p", x: p.x, y: p.y, b: buttons });
}

canvas.addEventListener("pointerdown", (e) => { canvas.focus(); e.preventDefault(); pointer(e); });
canvas.addEventListener("pointerup", pointer);
canvas.addEventListener("pointermove", pointer);
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  if (!state.input || !canvas.width) return;
  wheelRest += e.deltaMode === 0 ? e.deltaY : e.deltaY * 40;
  const p = position(e);
  while (Math.abs(wheelRest) >= 40) {
    const bit = wheelRest < 0 ? 8 : 16; // RFB buttons 4 (up) and 5 (down)
    send({ t: "p", x: p.x, y: p.y, b: buttons | bit });
    send({ t: "p", x: p.x, y: p.y, b: buttons });
    wheelRest -= Math.sign(wheelRest) * 40;
  }
}, { passive: false });

const COMBOS = {
  "ctrl-alt-del": [XK.ctrl, XK.alt, XK.del], super: [XK.super], "alt-tab": [XK.alt, XK.tab],
  "alt-f4": [XK.alt, XK.f4], print: [XK.print],
};
for (let n = 1; n <= 12; n++) COMBOS["f" + n] = [0xffbe + n - 1];

$("keys").addEventListener("change", (e) => {
  const combo = COMBOS[e.target.value];
  e.target.value = "";
  canvas.focus();
  if (!combo) return;
  for (const k of combo) key(k, true);
  for (const k of [...combo].reverse()) key(k, false);
});

$("fit").addEventListener("change", layout);
window.addEventListener("resize", layout);

$("here").addEventListener("click", () => send({ t: "here" }));

$("end").addEventListener("click", () => {
  if (state.state === "ended" || !window.confirm(T.end_confirm)) return;
  send({ t: "end" });
});

translate();
connect();
canvas.focus();
