"""Face-search records of a stream processor written to its Kinesis data stream.

A sink like the JSON Lines and parquet sinks of :mod:`rekolab.streaming`: opened
when the session starts (a stream that does not exist ends the session FAILED
with that reason), one ``PutRecords`` per record, through a Kinesis client in the
stream ARN's region; the record's ``Data`` is the record's JSON, as Rekognition writes it.
"""
from __future__ import annotations

import json
import time

from .session import arn_region, aws_client

__all__ = ["KinesisSink", "KinesisOutputError"]


class KinesisOutputError(RuntimeError):
    """The Kinesis data stream cannot be written."""


class KinesisSink:
    path = None  # not a file: the summary lists only file sinks

    def __init__(self, stream_arn: str):
        self.arn = stream_arn
        self.name = stream_arn.rsplit(":stream/", 1)[-1] if ":stream/" in stream_arn else stream_arn
        self.partition_key = "rekolab"
        self._client = None

    def open(self, name: str, session_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.partition_key = session_id
        self._client = aws_client("kinesis", arn_region(self.arn))
        try:
            status = self._client.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise KinesisOutputError(f"The Kinesis data stream {self.arn} does not exist; create it "
                                         "or give an existing stream as Output.KinesisDataStream.Arn") from None
            raise KinesisOutputError(f"Kinesis data stream {self.arn}: {exc}") from None
        except BotoCoreError as exc:
            raise KinesisOutputError(f"Cannot reach Kinesis for {self.arn}: {exc}") from None
        if status.get("StreamStatus") not in ("ACTIVE", "UPDATING"):
            raise KinesisOutputError(f"The Kinesis data stream {self.arn} is {status.get('StreamStatus')}, not ACTIVE")

    def write(self, record: dict, meta: dict) -> None:
        entries = [{"Data": json.dumps(record, separators=(",", ":")).encode(), "PartitionKey": self.partition_key}]
        delay = 0.2
        for attempt in range(5):
            result = self._client.put_records(StreamName=self.name, Records=entries)
            if not result.get("FailedRecordCount"):
                return
            time.sleep(delay)
            delay *= 2
        raise KinesisOutputError(f"PutRecords to {self.arn} kept failing: {result['Records'][0].get('ErrorMessage')}")

    def close(self) -> None:
        self._client = None
