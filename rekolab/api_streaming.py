"""The notebook verbs of stream processors (re-exported by :mod:`rekolab.api`): the
:class:`StreamProcessor` handle and :func:`create_stream_processor`, thin over the
boto3-shaped :class:`rekolab.Client` (the process-wide default one unless ``client=``).
The processors themselves are the core package :mod:`rekolab.streaming`.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from .client import default_client
from .errors import InvalidParameterException, ResourceInUseException
from .streaming import DEFAULT_QUEUE_SIZE, StreamSession
from .streaming.definitions import _SESSIONS
from .streaming.pipeline import _Subscriber

__all__ = ["StreamProcessor", "create_stream_processor"]


class StreamProcessor:
    """A handle on a stream processor; ``rk.StreamProcessor(name)`` reopens one.

        proc = rk.create_stream_processor("door-cam", source="clip.mp4",
                                          face_search={"CollectionId": "cast"})
        async for record in proc.start(stop_selector={"MaxDurationInSeconds": 30}):
            ...
        proc.run(realtime=False)        # a script: every record in a list
    """

    def __init__(self, name: str, client=None):
        self.name = name
        self._client = client or default_client()
        self._client.describe_stream_processor(Name=name)  # ResourceNotFoundException if unknown
        self._last: StreamSession | None = None

    def __repr__(self) -> str:
        d = self.describe()
        kind = "FaceSearch" if "FaceSearch" in d["Settings"] else "ConnectedHome"
        return f"StreamProcessor({self.name!r}, {kind}, {d['Status']})"

    def describe(self) -> dict:
        """DescribeStreamProcessor."""
        return self._client.describe_stream_processor(Name=self.name)

    @property
    def arn(self) -> str:
        return self.describe()["StreamProcessorArn"]

    @property
    def status(self) -> str:
        return self.describe()["Status"]

    @property
    def status_message(self) -> str | None:
        return self.describe().get("StatusMessage")

    @property
    def session(self) -> StreamSession | None:
        """The running session in this process (a new handle that receives records
        from when its iteration starts), else the last one this handle started."""
        live = _SESSIONS.get(self.name)
        if live is not None and (self._last is None or self._last.session_id != live.session_id):
            return StreamSession(live, None, self._client)
        return self._last

    def start(self, start_selector: dict | None = None, stop_selector: dict | None = None, *,
              realtime: bool = True, sinks: list[str] | None = None, queue_size: int | None = None) -> StreamSession:
        """StartStreamProcessor; returns the session to iterate (``async for`` / ``for``).

        ``start_selector``: ``{"KVSStreamStartSelector": {"ProducerTimestamp": ms}}`` or
        ``{"KVSStreamStartSelector": {"FragmentNumber": "..."}}`` (label processors
        default to ``ProducerTimestamp: 0``, the beginning of the source);
        ``stop_selector``: ``{"MaxDurationInSeconds": 1..120}`` (label default 10;
        face search default: until stop() or the end of the source).
        ``realtime=False`` reads a file as fast as analysis allows (tests, batch);
        ``sinks``: ``.jsonl`` / ``.parquet`` paths (``{SessionId}``, ``{Name}`` expand);
        ``queue_size``: records buffered for this consumer (default 256)."""
        params: dict = {"Name": self.name}
        kind = "FaceSearch" if "FaceSearch" in self.describe()["Settings"] else "ConnectedHome"
        if start_selector is None and kind == "ConnectedHome":
            start_selector = {"KVSStreamStartSelector": {"ProducerTimestamp": 0}}
        if start_selector is not None:
            params["StartSelector"] = start_selector
        if stop_selector is not None:
            params["StopSelector"] = stop_selector
        if not realtime:
            params["Realtime"] = False
        if sinks:
            params["Sinks"] = [os.fspath(s) for s in sinks]
        if queue_size is not None:
            params["QueueSize"] = queue_size
        sub = _Subscriber(queue_size or DEFAULT_QUEUE_SIZE)
        _, session = self._client.stream_processors.start(params, _running_loop(), sub)
        self._last = StreamSession(session, sub, self._client)
        return self._last

    def run(self, start_selector: dict | None = None, stop_selector: dict | None = None, **kwargs) -> list[dict]:
        """Start and collect every record until the session ends (for scripts).
        A face search processor on a live source without a stop selector runs until
        another thread calls stop()."""
        from .video.live import IterableSource

        spec = self._client.stream_processors.source_for(self.describe()["Input"]["KinesisVideoStream"]["Arn"])
        loop = _running_loop()
        if loop is not None and (getattr(spec, "__aiter__", None) or
                                 (isinstance(spec, IterableSource) and spec.is_async)):
            raise RuntimeError("this processor reads an async iterable on the running event loop; "
                               "use `async for record in proc.start(...)` instead of run()")
        return self.start(start_selector, stop_selector, **kwargs).records()

    def stop(self, wait: bool = True, timeout: float | None = 30) -> "StreamProcessor":
        """StopStreamProcessor; with ``wait``, block until the session has ended.
        A processor that is already STOPPED or FAILED (e.g. after ``run()``) has nothing
        to stop: a no-op here (``client.stop_stream_processor`` raises
        ResourceInUseException for it, as Rekognition does)."""
        if self.status not in ("STOPPED", "FAILED"):
            try:
                self._client.stop_stream_processor(Name=self.name)
            except ResourceInUseException:
                if self.status not in ("STOPPING", "STOPPED", "FAILED"):  # ended meanwhile: fine
                    raise
        live = _SESSIONS.get(self.name)
        if wait and live is not None:
            live.done.wait(timeout)
        return self

    def update(self, labels: list[str] | None = None, min_confidence: float | None = None, *,
               regions_of_interest: list[dict] | None = None, data_sharing: bool | None = None,
               delete: list[str] | tuple = ()) -> "StreamProcessor":
        """UpdateStreamProcessor (label settings, regions, data sharing; ``delete``:
        ``"ConnectedHomeMinConfidence"`` / ``"RegionsOfInterest"``)."""
        params: dict = {"Name": self.name}
        ch = {}
        if labels is not None:
            ch["Labels"] = list(labels)
        if min_confidence is not None:
            ch["MinConfidence"] = min_confidence
        if ch:
            params["SettingsForUpdate"] = {"ConnectedHomeForUpdate": ch}
        if regions_of_interest is not None:
            params["RegionsOfInterestForUpdate"] = regions_of_interest
        if data_sharing is not None:
            params["DataSharingPreferenceForUpdate"] = {"OptIn": bool(data_sharing)}
        if delete:
            params["ParametersToDelete"] = list(delete)
        self._client.update_stream_processor(**params)
        return self

    def delete(self) -> None:
        """DeleteStreamProcessor (it must be STOPPED or FAILED)."""
        self._client.delete_stream_processor(Name=self.name)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


def create_stream_processor(name: str, source: Any = None, *, face_search: dict | None = None,
                            connected_home: dict | None = None, stream_arn: str | None = None,
                            data_stream_arn: str | None = None, s3_destination: dict | None = None,
                            notification_channel: dict | None = None, role_arn: str | None = None,
                            regions_of_interest: list[dict] | None = None, kms_key_id: str | None = None,
                            tags: dict | None = None, data_sharing: bool | None = None,
                            sample_rate: float | None = None, client=None) -> StreamProcessor:
    """Create (or reopen: the name is idempotent) a stream processor reading ``source``.

    ``source``: a video file, an ``http(s)://`` or ``rtsp://`` URL, a camera index
    (``0`` or ``"camera:0"``), or any (async) iterable of BGR frames. It is mapped to
    ``stream_arn`` (default ``arn:aws:kinesisvideo:us-east-1:000000000000:stream/<name>/rekolab``);
    path, URL and camera sources are remembered under the rekolab home.

    Exactly one of ``face_search={"CollectionId": ..., "FaceMatchThreshold": 80}`` or
    ``connected_home={"Labels": ["PERSON", "PET", "PACKAGE" | "ALL"], "MinConfidence": 50}``.
    The ARNs, role, S3 destination and SNS topic default to local placeholders.
    ``sample_rate``: frames analysed per second of video (default 5)."""
    client = client or default_client()
    if (face_search is None) == (connected_home is None):
        raise InvalidParameterException("give exactly one of face_search={...} or connected_home={...}",
                                        "CreateStreamProcessor")
    stream_arn = stream_arn or f"arn:aws:kinesisvideo:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stream/{name}/rekolab"
    params: dict = {
        "Name": name,
        "Input": {"KinesisVideoStream": {"Arn": stream_arn}},
        "RoleArn": role_arn or f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/rekolab",
    }
    if face_search is not None:
        params["Settings"] = {"FaceSearch": dict(face_search)}
        params["Output"] = {"KinesisDataStream": {
            "Arn": data_stream_arn or f"arn:aws:kinesis:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stream/{name}"}}
    else:
        params["Settings"] = {"ConnectedHome": dict(connected_home)}
        params["Output"] = {"S3Destination": s3_destination or {"Bucket": "rekolab-streams", "KeyPrefix": ""}}
        params["NotificationChannel"] = notification_channel or {
            "SNSTopicArn": f"arn:aws:sns:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:AmazonRekognition-{name}"}
    for key, value in (("RegionsOfInterest", regions_of_interest), ("KmsKeyId", kms_key_id), ("Tags", tags),
                       ("SampleRate", sample_rate)):
        if value is not None:
            params[key] = value
    if data_sharing is not None:
        params["DataSharingPreference"] = {"OptIn": bool(data_sharing)}
    client.create_stream_processor(**params)  # first: a refused request maps nothing
    if source is not None:
        client.stream_processors.map_stream(stream_arn, source)
    return StreamProcessor(name, client)
