"""Job-completion notifications published to SNS.

The message is Rekognition's own: the SNS ``Message`` is the JSON string
``{"JobId", "Status", "API", "JobTag", "Timestamp", "Video": {"S3ObjectName", "S3Bucket"}}``
(JobTag only when the job has one). It is published once per job, after the job's
record is saved (Get* already answers SUCCEEDED or FAILED), through an SNS client
in the topic ARN's region, on a background thread; a failed publish is retried
with exponential back-off and logged, and never changes the job.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from .session import arn_region, aws_client

__all__ = ["sns_publisher", "completion_message_json", "publish_with_retries", "publish_async"]

log = logging.getLogger("rekolab.aws.sns")

_ORDER = ("JobId", "Status", "API", "JobTag", "Timestamp", "Video")


def completion_message_json(message: dict) -> str:
    """The message as Rekognition writes it (its documented member order)."""
    ordered = {k: message[k] for k in _ORDER if k in message}
    ordered.update({k: v for k, v in message.items() if k not in ordered})
    return json.dumps(ordered, separators=(",", ":"))


def publish_with_retries(topic_arn: str, body: str, attempts: int = 6, first_delay_s: float = 0.5,
                         subject: str | None = None) -> bool:
    """Publish ``body`` to ``topic_arn``; retry with back-off (0.5, 1, 2, 4, 8 s)."""
    delay = first_delay_s
    extra = {"Subject": subject} if subject else {}
    for attempt in range(1, attempts + 1):
        try:
            aws_client("sns", arn_region(topic_arn)).publish(TopicArn=topic_arn, Message=body, **extra)
            return True
        except Exception as exc:
            if attempt == attempts:
                log.error("giving up publishing to %s after %d attempts: %s", topic_arn, attempts, exc)
                return False
            log.warning("publishing to %s failed (attempt %d of %d, retrying in %.1f s): %s",
                        topic_arn, attempt, attempts, delay, exc)
            time.sleep(delay)
            delay *= 2
    return False


def publish_async(topic_arn: str, body: str, subject: str | None = None, attempts: int = 6) -> None:
    """:func:`publish_with_retries` on a background thread (the caller never waits)."""
    threading.Thread(target=publish_with_retries, args=(topic_arn, body, attempts, 0.5, subject),
                     name="rekolab-sns", daemon=True).start()


def sns_publisher(attempts: int = 6) -> Callable[[dict, dict], None]:
    """A job-manager publisher: ``publish(NotificationChannel, message)``."""
    def publish(channel: dict, message: dict) -> None:
        topic = channel.get("SNSTopicArn")
        if topic:
            publish_async(topic, completion_message_json(message), attempts=attempts)
    return publish
