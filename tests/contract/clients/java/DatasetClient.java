// Wizard step 1 from Java with the generated stubs (`make stubs-java` → gen/java): create
// a dataset, stream a file into it, read the version's quality report back.
//
//   java -cp <stubs + grpc-netty-shaded + protobuf-java> DatasetClient data.csv
//   (MTW_ENDPOINT, MTW_API_KEY, MTW_PROJECT from the environment)
import ai.mtw.dataset.v1.CreateDatasetRequest;
import ai.mtw.dataset.v1.Dataset;
import ai.mtw.dataset.v1.DatasetServiceGrpc;
import ai.mtw.dataset.v1.DatasetVersion;
import ai.mtw.dataset.v1.GetDatasetVersionRequest;
import ai.mtw.dataset.v1.IngestOptions;
import ai.mtw.dataset.v1.LabelCount;
import ai.mtw.dataset.v1.QualityReport;
import ai.mtw.dataset.v1.UploadDatasetVersionRequest;
import ai.mtw.dataset.v1.UploadHeader;
import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

public final class DatasetClient {
  private static final int CHUNK_BYTES = 64 * 1024; // a real client sends up to 4 MiB

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  public static void main(String[] args) throws Exception {
    Path file = Path.of(args[0]);
    String project = env("MTW_PROJECT", "dev");
    ManagedChannel channel =
        ManagedChannelBuilder.forTarget(env("MTW_ENDPOINT", "127.0.0.1:50051")).usePlaintext().build();
    Metadata auth = new Metadata();
    auth.put(
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
        "Bearer " + System.getenv("MTW_API_KEY"));
    try {
      DatasetServiceGrpc.DatasetServiceBlockingStub blocking =
          DatasetServiceGrpc.newBlockingStub(channel)
              .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(auth));
      DatasetServiceGrpc.DatasetServiceStub async =
          DatasetServiceGrpc.newStub(channel)
              .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(auth));

      Dataset dataset =
          blocking.createDataset(
              CreateDatasetRequest.newBuilder()
                  .setParent("projects/" + project)
                  .setDatasetId("java-" + System.currentTimeMillis())
                  .setDataset(Dataset.newBuilder().setDisplayName("uploaded from Java"))
                  .build());

      // Client streaming: a header message first, then the bytes in order.
      CompletableFuture<DatasetVersion> uploaded = new CompletableFuture<>();
      StreamObserver<UploadDatasetVersionRequest> upload =
          async.uploadDatasetVersion(
              new StreamObserver<DatasetVersion>() {
                @Override
                public void onNext(DatasetVersion version) {
                  uploaded.complete(version);
                }

                @Override
                public void onError(Throwable error) {
                  uploaded.completeExceptionally(error);
                }

                @Override
                public void onCompleted() {}
              });
      upload.onNext(
          UploadDatasetVersionRequest.newBuilder()
              .setHeader(
                  UploadHeader.newBuilder()
                      .setParent(dataset.getName())
                      .setOptions(IngestOptions.newBuilder().setFileName(file.getFileName().toString()))
                      .setSizeBytes(Files.size(file)))
              .build());
      try (InputStream in = Files.newInputStream(file)) {
        byte[] buffer = new byte[CHUNK_BYTES];
        for (int n = in.read(buffer); n > 0; n = in.read(buffer)) {
          upload.onNext(
              UploadDatasetVersionRequest.newBuilder().setChunk(ByteString.copyFrom(buffer, 0, n)).build());
        }
      }
      upload.onCompleted();
      DatasetVersion version =
          blocking.getDatasetVersion(
              GetDatasetVersionRequest.newBuilder()
                  .setName(uploaded.get(60, TimeUnit.SECONDS).getName())
                  .build());

      QualityReport report = version.getQualityReport();
      System.out.println(version.getName() + ": " + report.getRowCount() + " rows");
      for (LabelCount label : report.getLabelDistributionList()) {
        System.out.println("  " + label.getLabel() + ": " + label.getCount());
      }
    } finally {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
