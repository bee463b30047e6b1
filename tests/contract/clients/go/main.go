// Wizard step 1 from Go with the generated stubs (`make stubs-go` → gen/go): create a
// dataset, stream a file into it, read the version's quality report back.
//
//	MTW_ENDPOINT=127.0.0.1:50051 MTW_API_KEY=mtw_… MTW_PROJECT=dev go run . data.csv
//
// Prints one JSON object with what the service answered.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	datasetv1 "github.com/mtw/mtw/gen/go/mtw/dataset/v1"
)

const chunkBytes = 64 * 1024 // a real client sends up to 4 MiB per message

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// upload streams the file: a header message first, then the bytes in order.
func upload(ctx context.Context, client datasetv1.DatasetServiceClient, parent, file string) (*datasetv1.DatasetVersion, int, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	stream, err := client.UploadDatasetVersion(ctx)
	if err != nil {
		return nil, 0, err
	}
	header := &datasetv1.UploadHeader{
		Parent:    parent,
		Options:   &datasetv1.IngestOptions{FileName: filepath.Base(file)},
		SizeBytes: info.Size(),
	}
	if err := stream.Send(&datasetv1.UploadDatasetVersionRequest{
		Part: &datasetv1.UploadDatasetVersionRequest_Header{Header: header},
	}); err != nil {
		return nil, 0, err
	}
	chunks := 0
	buf := make([]byte, chunkBytes)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunks++
			chunk := append([]byte(nil), buf[:n]...)
			if err := stream.Send(&datasetv1.UploadDatasetVersionRequest{
				Part: &datasetv1.UploadDatasetVersionRequest_Chunk{Chunk: chunk},
			}); err != nil {
				return nil, chunks, err
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, chunks, err
		}
	}
	version, err := stream.CloseAndRecv()
	return version, chunks, err
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: dataset-client FILE")
	}
	project := env("MTW_PROJECT", "dev")
	// grpc-go 1.34 and later also offer grpc.NewClient with insecure.NewCredentials().
	conn, err := grpc.Dial(env("MTW_ENDPOINT", "127.0.0.1:50051"), grpc.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := datasetv1.NewDatasetServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+os.Getenv("MTW_API_KEY"))

	dataset, err := client.CreateDataset(ctx, &datasetv1.CreateDatasetRequest{
		Parent:    "projects/" + project,
		DatasetId: fmt.Sprintf("go-%d", time.Now().UnixNano()),
		Dataset:   &datasetv1.Dataset{DisplayName: "uploaded from Go"},
	})
	if err != nil {
		log.Fatal(err)
	}
	uploaded, chunks, err := upload(ctx, client, dataset.Name, os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	version, err := client.GetDatasetVersion(ctx, &datasetv1.GetDatasetVersionRequest{Name: uploaded.Name})
	if err != nil {
		log.Fatal(err)
	}
	report := version.GetQualityReport()
	labels := map[string]int64{}
	for _, label := range report.GetLabelDistribution() {
		labels[label.GetLabel()] = label.GetCount()
	}
	out, _ := json.Marshal(map[string]any{
		"dataset":         dataset.Name,
		"version":         version.Name,
		"chunksSent":      chunks,
		"rowCount":        report.GetRowCount(),
		"labels":          labels,
		"exactDuplicates": report.GetExactDuplicateRows(),
		"warningCount":    len(report.GetWarnings()),
	})
	fmt.Println(string(out))
}
