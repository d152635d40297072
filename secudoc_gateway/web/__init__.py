"""The web side: download pages, /metrics, /healthz."""
