"""Face detection in a stored video, written the way AWS's Rekognition Video
examples are (Developer Guide, "Analyzing a video stored in an Amazon S3 bucket
with Python"): upload to S3, start with an SNS topic, wait by polling the SQS queue
subscribed to it, then page GetFaceDetection by hand with NextToken.

Nothing here knows about rekolab: it runs against AWS as it is, and against
`rekolab serve` with only AWS_ENDPOINT_URL(_REKOGNITION) set.

    python video_face_detection.py BUCKET VIDEO_FILE ROLE_ARN
Prints one JSON object: the SNS message, the job status and every page.
"""
import json
import sys
import time

import boto3


class VideoDetect:
    def __init__(self, role_arn, bucket, video):
        self.rek = boto3.client("rekognition")
        self.sqs = boto3.client("sqs")
        self.sns = boto3.client("sns")
        self.role_arn = role_arn
        self.bucket = bucket
        self.video = video
        self.start_job_id = ""
        self.sqs_queue_url = ""
        self.sns_topic_arn = ""

    def create_topic_and_queue(self):
        millis = str(int(round(time.time() * 1000)))
        self.sns_topic_arn = self.sns.create_topic(Name="AmazonRekognitionExample" + millis)["TopicArn"]
        self.sqs_queue_url = self.sqs.create_queue(QueueName="AmazonRekognitionQueue" + millis)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.sqs_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.sns_topic_arn, Protocol="sqs", Endpoint=queue_arn)
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "MyPolicy", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "SQS:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": self.sns_topic_arn}}}]}
        self.sqs.set_queue_attributes(QueueUrl=self.sqs_queue_url, Attributes={"Policy": json.dumps(policy)})

    def delete_topic_and_queue(self):
        self.sqs.delete_queue(QueueUrl=self.sqs_queue_url)
        self.sns.delete_topic(TopicArn=self.sns_topic_arn)

    def start_face_detection(self):
        response = self.rek.start_face_detection(
            Video={"S3Object": {"Bucket": self.bucket, "Name": self.video}},
            NotificationChannel={"RoleArn": self.role_arn, "SNSTopicArn": self.sns_topic_arn},
            JobTag="example")
        self.start_job_id = response["JobId"]

    def get_sqs_message_success(self, timeout_s=300):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            sqs_response = self.sqs.receive_message(QueueUrl=self.sqs_queue_url, MessageAttributeNames=["ALL"],
                                                    MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in sqs_response.get("Messages", []):
                notification = json.loads(message["Body"])
                rek_message = json.loads(notification["Message"])
                self.sqs.delete_message(QueueUrl=self.sqs_queue_url, ReceiptHandle=message["ReceiptHandle"])
                if rek_message["JobId"] == self.start_job_id:
                    return rek_message
        raise TimeoutError("no completion message")

    def get_face_detection_results(self, max_results=1):
        pages, pagination_token, finished = [], "", False
        while not finished:
            kwargs = {"JobId": self.start_job_id, "MaxResults": max_results}
            if pagination_token:
                kwargs["NextToken"] = pagination_token
            response = self.rek.get_face_detection(**kwargs)
            response.pop("ResponseMetadata")
            pages.append(response)
            if "NextToken" in response:
                pagination_token = response["NextToken"]
            else:
                finished = True
        return pages


def main():
    bucket, video_file, role_arn = sys.argv[1:4]
    s3 = boto3.client("s3")
    s3.upload_file(video_file, bucket, "example/clip.mp4")
    analyzer = VideoDetect(role_arn, bucket, "example/clip.mp4")
    analyzer.create_topic_and_queue()
    analyzer.start_face_detection()
    message = analyzer.get_sqs_message_success()
    pages = analyzer.get_face_detection_results() if message["Status"] == "SUCCEEDED" else []
    # A second queue poll finds nothing: exactly one message per job.
    extra = analyzer.sqs.receive_message(QueueUrl=analyzer.sqs_queue_url, WaitTimeSeconds=1).get("Messages", [])
    analyzer.delete_topic_and_queue()
    print(json.dumps({"JobId": analyzer.start_job_id, "Message": message, "Pages": pages,
                      "ExtraMessages": len(extra)}))


if __name__ == "__main__":
    main()
