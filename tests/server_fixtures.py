"""Helpers shared by the tests that talk to servers in subprocesses (moto's server as
S3/SNS/SQS/Kinesis, `rekolab serve`), all on 127.0.0.1 and stopped by process group."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from conftest import REPO

KEY, SECRET = "AKIDREKOLABTEST", "rekolab-test-secret"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/rekognition"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM to the process group we started (never by name), then wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def start_rekolab(env: dict, *args: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`rekolab serve` on a free loopback port; returns the process and its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rekolab.cli", "serve", "--port", str(port),
                             "--log-level", "warning", *args],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


@contextlib.contextmanager
def moto_server():
    """moto's server (S3, SNS, SQS, Kinesis, ...) on a free port; yields its URL."""
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/moto-api/", moto)
        yield url
    finally:
        stop(moto)


def aws_env(aws_url: str, **more: str) -> dict:
    """The process environment with AWS_* replaced: moto for every service, test keys,
    and this checkout first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=aws_url, AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID=KEY,
               AWS_SECRET_ACCESS_KEY=SECRET, AWS_EC2_METADATA_DISABLED="true",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **more)
    return env


def boto_client(service: str, endpoint: str, key: str = KEY, secret: str = SECRET):
    """A real boto3 client for ``service`` at ``endpoint`` (no retries: errors show at once)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))
