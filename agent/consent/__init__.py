"""The customer's consent: the hash-chained ledger (kept 10 years) and the packaged service terms."""
