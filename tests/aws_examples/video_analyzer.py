"""All eight Rekognition Video analyses one after the other, written the way AWS's own
example program is (Developer Guide, "Analyzing a video stored in an Amazon S3 bucket
with Python (SDK)", class VideoDetect): upload to S3, create an SNS topic and an SQS
queue subscribed to it, then for each analysis Start* with the NotificationChannel,
poll SQS for the completion message, and page Get* by hand. As in AWS's program, the
first Get* call passes ``NextToken=''`` and the loops read the members the way it does
(``response['VideoMetadata']['Codec']``, ``segment['StartTimecodeSMPTE']``, ...).

Nothing here knows about rekolab: it runs against AWS as it is, and against
`rekolab serve` with only AWS_ENDPOINT_URL(_REKOGNITION) set.

    python video_analyzer.py BUCKET VIDEO_FILE ROLE_ARN COLLECTION_ID
Prints one JSON object: per analysis, the SNS message and what the pages held.
"""
import json
import sys
import time

import boto3


class VideoDetect:
    def __init__(self, role, bucket, video, collection):
        self.rek = boto3.client("rekognition")
        self.sqs = boto3.client("sqs")
        self.sns = boto3.client("sns")
        self.roleArn = role
        self.bucket = bucket
        self.video = video
        self.collection = collection
        self.startJobId = ""
        self.sqsQueueUrl = ""
        self.snsTopicArn = ""
        self.message = None

    # -- the topic and queue, as AWS's CreateTopicandQueue ---------------------------------
    def CreateTopicandQueue(self):
        millis = str(int(round(time.time() * 1000)))
        snsTopicName = "AmazonRekognitionExample" + millis
        self.snsTopicArn = self.sns.create_topic(Name=snsTopicName)["TopicArn"]
        sqsQueueName = "AmazonRekognitionQueue" + millis
        self.sqs.create_queue(QueueName=sqsQueueName)
        self.sqsQueueUrl = self.sqs.get_queue_url(QueueName=sqsQueueName)["QueueUrl"]
        attribs = self.sqs.get_queue_attributes(QueueUrl=self.sqsQueueUrl, AttributeNames=["QueueArn"])["Attributes"]
        sqsQueueArn = attribs["QueueArn"]
        self.sns.subscribe(TopicArn=self.snsTopicArn, Protocol="sqs", Endpoint=sqsQueueArn)
        policy = """{{
  "Version":"2012-10-17",
  "Statement":[
    {{
      "Sid":"MyPolicy",
      "Effect":"Allow",
      "Principal" : {{"AWS" : "*"}},
      "Action":"SQS:SendMessage",
      "Resource": "{}",
      "Condition":{{
        "ArnEquals":{{
          "aws:SourceArn": "{}"
        }}
      }}
    }}
  ]
}}""".format(sqsQueueArn, self.snsTopicArn)
        self.sqs.set_queue_attributes(QueueUrl=self.sqsQueueUrl, Attributes={"Policy": policy})

    def DeleteTopicandQueue(self):
        self.sqs.delete_queue(QueueUrl=self.sqsQueueUrl)
        self.sns.delete_topic(TopicArn=self.snsTopicArn)

    def NotificationChannel(self):
        return {"RoleArn": self.roleArn, "SNSTopicArn": self.snsTopicArn}

    def S3Video(self):
        return {"S3Object": {"Bucket": self.bucket, "Name": self.video}}

    def GetSQSMessageSuccess(self, timeout_s=300):
        jobFound = False
        succeeded = False
        deadline = time.time() + timeout_s
        while not jobFound:
            if time.time() > deadline:
                raise TimeoutError("no completion message for " + self.startJobId)
            sqsResponse = self.sqs.receive_message(QueueUrl=self.sqsQueueUrl, MessageAttributeNames=["ALL"],
                                                   MaxNumberOfMessages=10, WaitTimeSeconds=1)
            if sqsResponse:
                if "Messages" not in sqsResponse:
                    continue
                for message in sqsResponse["Messages"]:
                    notification = json.loads(message["Body"])
                    rekMessage = json.loads(notification["Message"])
                    if rekMessage["JobId"] == self.startJobId:
                        jobFound = True
                        self.message = rekMessage
                        if rekMessage["Status"] == "SUCCEEDED":
                            succeeded = True
                    # Delete the unknown message. Consider sending to dead letter queue
                    self.sqs.delete_message(QueueUrl=self.sqsQueueUrl, ReceiptHandle=message["ReceiptHandle"])
        return succeeded

    # -- labels --------------------------------------------------------------------------------
    def StartLabelDetection(self):
        response = self.rek.start_label_detection(Video=self.S3Video(), NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetLabelDetectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_label_detection(JobId=self.startJobId, MaxResults=maxResults,
                                                    NextToken=paginationToken, SortBy="TIMESTAMP",
                                                    AggregateBy="TIMESTAMPS")
            out["codec"] = response["VideoMetadata"]["Codec"]
            str(response["VideoMetadata"]["DurationMillis"]) + response["VideoMetadata"]["Format"]
            str(response["VideoMetadata"]["FrameRate"])
            out["pages"] += 1
            for labelDetection in response["Labels"]:
                label = labelDetection["Label"]
                out["items"].append([labelDetection["Timestamp"], label["Name"], label["Confidence"]])
                for instance in label["Instances"]:
                    str(instance["Confidence"]) + str(instance["BoundingBox"]["Top"])
                    str(instance["BoundingBox"]["Left"]) + str(instance["BoundingBox"]["Width"])
                    str(instance["BoundingBox"]["Height"])
                [parent["Name"] for parent in label["Parents"]]
                [alias["Name"] for alias in label["Aliases"]]
                [category["Name"] for category in label["Categories"]]
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- faces -----------------------------------------------------------------------------------
    def StartFaceDetection(self):
        response = self.rek.start_face_detection(Video=self.S3Video(), NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetFaceDetectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_face_detection(JobId=self.startJobId, MaxResults=maxResults,
                                                   NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for faceDetection in response["Faces"]:
                out["items"].append([faceDetection["Timestamp"], faceDetection["Face"]["Confidence"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- celebrities ---------------------------------------------------------------------------
    def StartCelebrityDetection(self):
        response = self.rek.start_celebrity_recognition(Video=self.S3Video(),
                                                        NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetCelebrityDetectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_celebrity_recognition(JobId=self.startJobId, MaxResults=maxResults,
                                                          NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for celebrityRecognition in response["Celebrities"]:
                celebrity = celebrityRecognition["Celebrity"]
                if "Face" in celebrity:
                    str(celebrity["Face"]["BoundingBox"]["Top"])
                out["items"].append([celebrityRecognition["Timestamp"], celebrity["Name"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- face search ---------------------------------------------------------------------------
    def StartFaceSearchCollection(self):
        response = self.rek.start_face_search(Video=self.S3Video(), CollectionId=self.collection,
                                              NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetFaceSearchCollectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_face_search(JobId=self.startJobId, MaxResults=maxResults,
                                                NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for personMatch in response["Persons"]:
                matches = []
                if "FaceMatches" in personMatch:
                    for faceMatch in personMatch["FaceMatches"]:
                        matches.append([faceMatch["Face"]["FaceId"], faceMatch["Face"]["ExternalImageId"],
                                        faceMatch["Similarity"]])
                out["items"].append([personMatch["Timestamp"], personMatch["Person"]["Index"], matches])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- people ----------------------------------------------------------------------------------
    def StartPersonPathing(self):
        response = self.rek.start_person_tracking(Video=self.S3Video(),
                                                  NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetPersonPathingResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_person_tracking(JobId=self.startJobId, MaxResults=maxResults,
                                                    NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for personDetection in response["Persons"]:
                out["items"].append([personDetection["Timestamp"], personDetection["Person"]["Index"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- content moderation ------------------------------------------------------------------
    def StartUnsafeContent(self):
        response = self.rek.start_content_moderation(Video=self.S3Video(),
                                                     NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetUnsafeContentResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_content_moderation(JobId=self.startJobId, MaxResults=maxResults,
                                                       NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for contentModerationDetection in response["ModerationLabels"]:
                label = contentModerationDetection["ModerationLabel"]
                out["items"].append([contentModerationDetection["Timestamp"], label["Name"],
                                     label["Confidence"], label["ParentName"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- segments ------------------------------------------------------------------------------
    def StartSegmentDetection(self):
        min_Technical_Cue_Confidence = 80.0
        min_Shot_Confidence = 80.0
        max_pixel_threshold = 0.1
        min_coverage_percentage = 60
        response = self.rek.start_segment_detection(
            Video=self.S3Video(), NotificationChannel=self.NotificationChannel(),
            SegmentTypes=["TECHNICAL_CUE", "SHOT"],
            Filters={"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": max_pixel_threshold,
                                                           "MinCoveragePercentage": min_coverage_percentage},
                                            "MinSegmentConfidence": min_Technical_Cue_Confidence},
                     "ShotFilter": {"MinSegmentConfidence": min_Shot_Confidence}})
        self.startJobId = response["JobId"]

    def GetSegmentDetectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        firstTime = True
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_segment_detection(JobId=self.startJobId, MaxResults=maxResults,
                                                      NextToken=paginationToken)
            out["pages"] += 1
            if firstTime:
                for selectedSegmentType in response["SelectedSegmentTypes"]:
                    str(selectedSegmentType["Type"]) + str(selectedSegmentType["ModelVersion"])
                for audioMetadata in response["AudioMetadata"]:
                    str(audioMetadata["Codec"]) + str(audioMetadata["DurationMillis"])
                    str(audioMetadata["NumberOfChannels"]) + str(audioMetadata["SampleRate"])
                for videoMetadata in response["VideoMetadata"]:
                    out["codec"] = videoMetadata["Codec"]
                    str(videoMetadata["ColorRange"]) + str(videoMetadata["DurationMillis"])
                    str(videoMetadata["Format"]) + str(videoMetadata["FrameRate"])
                firstTime = False
            for segment in response["Segments"]:
                if segment["Type"] == "TECHNICAL_CUE":
                    kind = segment["TechnicalCueSegment"]["Type"]
                    str(segment["TechnicalCueSegment"]["Confidence"])
                if segment["Type"] == "SHOT":
                    kind = "Shot " + str(segment["ShotSegment"]["Index"])
                    str(segment["ShotSegment"]["Confidence"])
                out["items"].append([kind, segment["StartTimecodeSMPTE"], segment["EndTimecodeSMPTE"],
                                     segment["DurationSMPTE"], segment["StartFrameNumber"],
                                     segment["EndFrameNumber"], segment["DurationFrames"],
                                     segment["StartTimestampMillis"], segment["EndTimestampMillis"],
                                     segment["DurationMillis"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out

    # -- text ----------------------------------------------------------------------------------
    def StartTextDetection(self):
        response = self.rek.start_text_detection(Video=self.S3Video(), NotificationChannel=self.NotificationChannel())
        self.startJobId = response["JobId"]

    def GetTextDetectionResults(self):
        maxResults = 10
        paginationToken = ""
        finished = False
        out = {"pages": 0, "items": [], "codec": None}
        while not finished:
            response = self.rek.get_text_detection(JobId=self.startJobId, MaxResults=maxResults,
                                                   NextToken=paginationToken)
            out["codec"] = response["VideoMetadata"]["Codec"]
            out["pages"] += 1
            for textDetection in response["TextDetections"]:
                text = textDetection["TextDetection"]
                str(text["Geometry"]["BoundingBox"]["Top"]) + str(text["Geometry"]["BoundingBox"]["Left"])
                out["items"].append([textDetection["Timestamp"], text["DetectedText"], text["Type"],
                                     text["Confidence"]])
            if "NextToken" in response:
                paginationToken = response["NextToken"]
            else:
                finished = True
        return out


def main():
    bucket, video_file, role_arn, collection = sys.argv[1:5]
    s3 = boto3.client("s3")
    s3.upload_file(video_file, bucket, "example/analyzer.mp4")
    analyzer = VideoDetect(role_arn, bucket, "example/analyzer.mp4", collection)
    analyzer.CreateTopicandQueue()
    results = {}
    for name, start, get in [
        ("StartLabelDetection", analyzer.StartLabelDetection, analyzer.GetLabelDetectionResults),
        ("StartFaceDetection", analyzer.StartFaceDetection, analyzer.GetFaceDetectionResults),
        ("StartCelebrityRecognition", analyzer.StartCelebrityDetection, analyzer.GetCelebrityDetectionResults),
        ("StartFaceSearch", analyzer.StartFaceSearchCollection, analyzer.GetFaceSearchCollectionResults),
        ("StartPersonTracking", analyzer.StartPersonPathing, analyzer.GetPersonPathingResults),
        ("StartContentModeration", analyzer.StartUnsafeContent, analyzer.GetUnsafeContentResults),
        ("StartSegmentDetection", analyzer.StartSegmentDetection, analyzer.GetSegmentDetectionResults),
        ("StartTextDetection", analyzer.StartTextDetection, analyzer.GetTextDetectionResults),
    ]:
        start()
        if analyzer.GetSQSMessageSuccess():
            results[name] = get()
        else:
            results[name] = {}
        results[name]["Message"] = analyzer.message
        results[name]["JobId"] = analyzer.startJobId
    # A last queue poll finds nothing: exactly one message per job.
    extra = analyzer.sqs.receive_message(QueueUrl=analyzer.sqsQueueUrl, WaitTimeSeconds=1).get("Messages", [])
    analyzer.DeleteTopicandQueue()
    print(json.dumps({"Results": results, "ExtraMessages": len(extra)}))


if __name__ == "__main__":
    main()
