"""S3 objects, SNS notifications and Kinesis records through boto3's standard
configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, profiles, the
credential chain): real AWS, MinIO, LocalStack or moto's server.

Every client is made for the region of the resource it talks to (the region in
an SNS topic or Kinesis stream ARN), not the caller's. boto3 is imported only
when one of these is used (``pip install 'rekolab[aws]'``).
"""
from __future__ import annotations

from .kinesis import KinesisOutputError, KinesisSink
from .s3 import fetch_object
from .session import arn_region, aws_client
from .sns import completion_message_json, sns_publisher

__all__ = ["fetch_object", "sns_publisher", "completion_message_json", "KinesisSink", "KinesisOutputError",
           "aws_client", "arn_region"]
