// Wizard step 1 from Node.js with the generated stubs (`make stubs-ts` → gen/js) and
// @grpc/grpc-js: create a dataset, stream a file into it (client-streaming upload),
// read the version's quality report back. The same program protos/README.md shows.
//
//   MTW_ENDPOINT=127.0.0.1:50051 MTW_API_KEY=mtw_… MTW_PROJECT=dev \
//     node tests/contract/clients/node/dataset_client.js data.csv
//
// Prints one JSON object: what the service answered, and the status codes of a call
// without a key and of a dataset that does not exist.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { pipeline } = require("node:stream/promises");
const grpc = require("@grpc/grpc-js");

const GEN = path.resolve(__dirname, "../../../../gen/js");
const {
  DatasetServiceClient,
  CreateDatasetRequest,
  GetDatasetRequest,
  GetDatasetVersionRequest,
  UploadDatasetVersionRequest,
} = require(path.join(GEN, "mtw/dataset/v1/dataset_service"));
const { QualityReport } = require(path.join(GEN, "mtw/dataset/v1/quality_report"));

const CHUNK_BYTES = 64 * 1024; // a real client sends up to 4 MiB per message

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

// Streams the file: a header message first, then the bytes in order, never the whole
// file in memory (pipeline waits whenever the gRPC stream pushes back).
async function upload(client, parent, file, metadata) {
  let chunks = 0;
  let call;
  const done = new Promise((resolve, reject) => {
    call = client.uploadDatasetVersion(metadata, (error, version) =>
      error ? reject(error) : resolve(version),
    );
  });
  await pipeline(
    fs.createReadStream(file, { highWaterMark: CHUNK_BYTES }),
    async function* (bytes) {
      const { size } = fs.statSync(file);
      yield UploadDatasetVersionRequest.fromPartial({
        header: { parent, options: { fileName: path.basename(file) }, sizeBytes: size },
      });
      for await (const chunk of bytes) {
        chunks += 1;
        yield UploadDatasetVersionRequest.fromPartial({ chunk });
      }
    },
    call,
  );
  return { version: await done, chunks };
}

async function statusOf(promise) {
  try {
    await promise;
    return { code: 0, name: "OK" };
  } catch (error) {
    return { code: error.code, name: grpc.status[error.code], details: error.details };
  }
}

async function main() {
  const [file] = process.argv.slice(2);
  const endpoint = process.env.MTW_ENDPOINT || "127.0.0.1:50051";
  const project = process.env.MTW_PROJECT || "dev";
  const client = new DatasetServiceClient(endpoint, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${process.env.MTW_API_KEY}`);

  const dataset = await unary(
    client,
    "createDataset",
    CreateDatasetRequest.fromPartial({
      parent: `projects/${project}`,
      datasetId: `node-${Date.now().toString(36)}`,
      dataset: { displayName: "uploaded from Node.js" },
    }),
    metadata,
  );
  const uploaded = await upload(client, dataset.name, file, metadata);
  const version = await unary(
    client,
    "getDatasetVersion",
    GetDatasetVersionRequest.fromPartial({ name: uploaded.version.name }),
    metadata,
  );
  const unauthenticated = await statusOf(
    unary(client, "getDataset", GetDatasetRequest.fromPartial({ name: dataset.name }), new grpc.Metadata()),
  );
  const notFound = await statusOf(
    unary(client, "getDataset", GetDatasetRequest.fromPartial({ name: `${dataset.name}-missing` }), metadata),
  );
  client.close();

  console.log(
    JSON.stringify({
      dataset: dataset.name,
      version: version.name,
      chunksSent: uploaded.chunks,
      sizeBytes: version.sizeBytes,
      columns: version.columns,
      labelNames: version.labelNames,
      splits: version.splits.map((s) => ({ name: s.name, rowCount: s.rowCount })),
      qualityReport: QualityReport.toJSON(version.qualityReport),
      unauthenticated,
      notFound,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
