"""The HTTP gateway: REST (transcoded to the services' gRPC from their google.api.http
annotations), Server-Sent Events for watches, streamed uploads, and the dashboard."""
