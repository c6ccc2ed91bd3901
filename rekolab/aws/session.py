"""One boto3 session per process, one client per (service, region)."""
from __future__ import annotations

import threading

__all__ = ["aws_client", "arn_region"]

_LOCK = threading.Lock()
_CLIENTS: dict[tuple, object] = {}


def arn_region(arn: str) -> str | None:
    """The region field of an ARN (``arn:aws:sns:eu-west-1:123:topic`` -> ``eu-west-1``)."""
    parts = arn.split(":")
    return parts[3] or None if len(parts) > 5 and parts[0] == "arn" else None


def aws_client(service: str, region: str | None = None):
    """A boto3 client from the standard chain (endpoint variables, profiles,
    credentials); clients are thread-safe and shared."""
    import os

    # The endpoint variables are part of the key: a test (or user) that points
    # AWS_ENDPOINT_URL elsewhere gets a client for the new place.
    key = (service, region, os.environ.get("AWS_ENDPOINT_URL"),
           os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"))
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ImportError(f"talking to {service} needs boto3: pip install 'rekolab[aws]'") from None
            from botocore.config import Config

            session = boto3.session.Session()
            client = session.client(service, region_name=region or session.region_name or "us-east-1",
                                    config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                  connect_timeout=5, read_timeout=30))
            _CLIENTS[key] = client
        return client
