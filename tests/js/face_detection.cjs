// The AWS SDK for JavaScript v3 against `rekolab serve`: one Start/Get loop with
// paging and one modelled error. Endpoint and keys come from the environment
// (AWS_ENDPOINT_URL_REKOGNITION, AWS_ACCESS_KEY_ID, ...), as for any AWS SDK.
//   node face_detection.cjs BUCKET KEY   -> prints one JSON object
const {
  RekognitionClient, StartFaceDetectionCommand, GetFaceDetectionCommand, ResourceNotFoundException,
} = require("@aws-sdk/client-rekognition");

async function main() {
  const [bucket, key] = process.argv.slice(2);
  const client = new RekognitionClient({ endpoint: process.env.AWS_ENDPOINT_URL_REKOGNITION, region: "us-east-1" });
  const { JobId } = await client.send(new StartFaceDetectionCommand({
    Video: { S3Object: { Bucket: bucket, Name: key } }, JobTag: "js",
  }));
  let page;
  for (let i = 0; i < 600; i++) {
    page = await client.send(new GetFaceDetectionCommand({ JobId, MaxResults: 1 }));
    if (page.JobStatus !== "IN_PROGRESS") break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const faces = [...(page.Faces || [])];
  let pages = 1;
  while (page.NextToken) {
    page = await client.send(new GetFaceDetectionCommand({ JobId, MaxResults: 1, NextToken: page.NextToken }));
    faces.push(...page.Faces);
    pages += 1;
  }
  let error = null;
  try {
    await client.send(new GetFaceDetectionCommand({ JobId: "0".repeat(64) }));
  } catch (e) {
    error = { name: e.name, modelled: e instanceof ResourceNotFoundException, status: e.$metadata.httpStatusCode,
              message: e.message, requestId: e.$metadata.requestId };
  }
  console.log(JSON.stringify({ JobId, JobStatus: page.JobStatus, pages, faces, error,
                               videoMetadata: page.VideoMetadata }));
}

main().catch((e) => { console.error(e); process.exit(1); });
