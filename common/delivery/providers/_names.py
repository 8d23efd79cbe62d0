from urllib.parse import urlsplit


def address(url: str) -> str:
    """host:port/path of a URL without credentials: part of a sender's name, which appears in logs and keys."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')}"
