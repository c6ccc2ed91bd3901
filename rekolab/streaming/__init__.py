"""Stream processors: Rekognition Video's streaming API, run locally.

    import rekolab as rk
    proc = rk.create_stream_processor("door-cam", source="clip.mp4",
                                      face_search={"CollectionId": "cast", "FaceMatchThreshold": 85})
    async for record in proc.start(stop_selector={"MaxDurationInSeconds": 30}):
        ...      # Kinesis-shaped face search records, one per analysed frame

    client.create_stream_processor(Name=..., Input=..., Output=..., Settings=..., RoleArn=...)
    client.start_stream_processor(Name=...)  -> {"SessionId": ...}

The seven operations (Create/Describe/List/Start/Stop/Update/DeleteStreamProcessor)
take and return what boto3's Rekognition client does, validated against botocore's
own service model. Differences from the service, all documented in docs/streaming.md:

* **Input.** Instead of a Kinesis video stream, a processor reads a *source*: a local
  file, an HTTP(S) URL, an RTSP/RTMP/SRT URL, a camera, or any (async) iterable of
  frames (:mod:`rekolab.video.live`). ``Input.KinesisVideoStream.Arn`` is still
  required; the ARN is mapped to a source by ``rk.client(streams={arn: source})``,
  by ``REKOLAB_STREAMS="arn=/path/clip.mp4,arn2=rtsp://cam/1"``, or by the notebook
  verb's ``source=`` (which remembers path/URL/camera sources under the home).
* **Output.** Face search records (Kinesis Data Streams shape) are *yielded* to
  whoever iterates the session (``async for`` / ``for``), and written to optional
  JSON Lines / parquet sinks. A label processor's S3Destination is a folder under
  the rekolab home: ``<home>/s3/<Bucket>/<KeyPrefix>/<Name>/<SessionId>/``; its SNS
  events are yielded too, and sent to ``client.subscribe`` callbacks.
* **Time.** Fragments are 2-second chunks of the source's presentation time; see
  :func:`fragment_number`.

State is kept under ``<home>/stream_processors/``: ``<Name>.json`` per processor
(atomic writes) and ``<Name>.sessions/<SessionId>.json`` per finished session.

The package, one job a module (none imports a surface: the notebook handle
``rk.StreamProcessor`` / ``rk.create_stream_processor`` is :mod:`rekolab.api_streaming`):

* :mod:`.definitions`: constants, fragment numbers, the processor files, CreateStreamProcessor validation;
* :mod:`.pipeline`: consumer queues, the frame buffer, sinks, analysers, regions of interest, the sampler;
* :mod:`.session`: a running session (:class:`_Session`) and its iteration handle :class:`StreamSession`;
* :mod:`.manager`: :class:`StreamProcessorManager`, the seven operations behind ``client.*_stream_processor``.
"""
from __future__ import annotations

# re-exported, with the private names the tests reach for
from .definitions import (CONNECTED_HOME_CLASSES, DEFAULT_MAX_STREAM_PROCESSORS,  # noqa: F401
                          DEFAULT_QUEUE_SIZE, DEFAULT_SAMPLE_RATE, FRAGMENT_SECONDS, _def_path, _sessions_dir,
                          _update_def, fragment_number, parse_fragment_number, parse_streams)
from .manager import StreamProcessorManager, jobs_publisher  # noqa: F401
from .pipeline import _Subscriber  # noqa: F401
from .session import StreamSession, _Session  # noqa: F401

__all__ = [
    "StreamSession",
    "StreamProcessorManager",
    "fragment_number",
    "parse_fragment_number",
    "parse_streams",
    "CONNECTED_HOME_CLASSES",
    "FRAGMENT_SECONDS",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_MAX_STREAM_PROCESSORS",
]
