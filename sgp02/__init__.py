"""The SGP.02 kernel: what every part of esx shares (status codes, EIS values, identifiers, roles)."""
