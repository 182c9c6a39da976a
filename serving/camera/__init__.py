"""The edge camera agent (``lineqa camera``): frames from a source, judged by the gateway, verdicts out."""
