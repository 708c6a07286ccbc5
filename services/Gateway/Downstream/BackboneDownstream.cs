using Google.Protobuf;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly.Registry;

namespace Graft.Gateway.Downstream;

/// <summary>The backbone as the gateway uses it: resilient Extract and Describe, GetTail and ExportGraph streamed.</summary>
public sealed class BackboneDownstream(
    Backbone.BackboneClient client, ResiliencePipelineProvider<string> pipelines, DownstreamMetrics metrics,
    BackboneIdentity identity, ILogger<BackboneDownstream> logger)
{
    private readonly DownstreamInvoker _invoker = new(DownstreamClients.Backbone, pipelines, metrics, logger);

    public Task<ExtractReply> ExtractAsync(ByteString image, CancellationToken cancellationToken)
        => ExtractAsync(image, [], null, cancellationToken);

    /// <summary>One backbone run: the final features plus the activations at every named cut point (in that order),
    /// of the image itself or of one augmented view of it.</summary>
    public async Task<ExtractReply> ExtractAsync(
        ByteString image, IReadOnlyCollection<string> cutPoints, Augmentation? augmentation, CancellationToken cancellationToken)
    {
        var request = new ExtractRequest { Image = image, CutPoints = { cutPoints } };
        if (augmentation is not null)
        {
            request.Augmentation = augmentation;
        }
        var reply = await _invoker.IdempotentAsync("Extract", o => client.ExtractAsync(request, o), cancellationToken);
        identity.Observe(reply.Fingerprint);
        return reply;
    }

    /// <summary>Streams the backbone's tail from <paramref name="cutPoint"/> to the final features (GetTail) piece by
    /// piece, as it arrives, checking at the end that every announced byte came. One attempt: the caller retries the whole
    /// training.</summary>
    public async IAsyncEnumerable<TailGraphChunk> GetTailAsync(string cutPoint, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        using var call = client.GetTail(new GetTailRequest { CutPoint = cutPoint }, cancellationToken: cancellationToken);
        long received = 0, announced = -1;
        var reader = call.ResponseStream;
        while (true)
        {
            TailGraphChunk chunk;
            try
            {
                if (!await reader.MoveNext(cancellationToken))
                {
                    break;
                }
                chunk = reader.Current;
            }
            catch (RpcException e)
            {
                _invoker.Record("GetTail", e.StatusCode, System.Diagnostics.Stopwatch.GetElapsedTime(started));
                throw _invoker.Translate(e);
            }
            announced = chunk.TotalBytes;
            received += chunk.OnnxChunk.Length;
            yield return chunk;
        }
        if (announced < 0 || received != announced)
        {
            _invoker.Record("GetTail", StatusCode.Unavailable, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            throw new RpcException(new Status(StatusCode.Unavailable,
                $"The backbone's tail from '{cutPoint}' arrived incomplete ({received} of {Math.Max(0, announced)} bytes); train again."));
        }
        _invoker.Record("GetTail", StatusCode.OK, System.Diagnostics.Stopwatch.GetElapsedTime(started));
    }

    /// <summary>Extract from a replica serving <paramref name="fingerprint"/>. Behind a balancer the call lands on any
    /// replica; one of another fingerprint refuses at once (ExtractRequest.required_fingerprint) and the call is made again,
    /// at most <paramref name="attempts"/> times. FAILED_PRECONDITION when no replica of that fingerprint answered.</summary>
    public Task<ExtractReply> ExtractFromAsync(ByteString image, string fingerprint, int attempts, CancellationToken cancellationToken)
        => ExtractFromAsync(image, [], null, fingerprint, attempts, cancellationToken);

    /// <inheritdoc cref="ExtractFromAsync(ByteString, string, int, CancellationToken)"/>
    public async Task<ExtractReply> ExtractFromAsync(
        ByteString image, IReadOnlyCollection<string> cutPoints, Augmentation? augmentation, string fingerprint, int attempts, CancellationToken cancellationToken)
    {
        var request = new ExtractRequest { Image = image, CutPoints = { cutPoints }, RequiredFingerprint = fingerprint };
        if (augmentation is not null)
        {
            request.Augmentation = augmentation;
        }
        for (var attempt = 1; attempt <= attempts; attempt++)
        {
            try
            {
                var reply = await _invoker.IdempotentAsync("Extract", o => client.ExtractAsync(request, o), cancellationToken);
                identity.Observe(reply.Fingerprint);
                if (reply.Fingerprint == fingerprint)
                {
                    return reply;
                }
                // Otherwise a backbone too old to know required_fingerprint answered anyway: ask again.
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
            {
                // A replica of another fingerprint refused before doing any work: ask again.
            }
        }
        throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"No backbone replica serving fingerprint '{fingerprint}' answered in {attempts} attempts (Graft:Gateway:FingerprintAttempts); " +
            "every replica asked serves another backbone. Start a replica of that backbone, or train against the backbone now serving."));
    }

    public async Task<BackboneInfo> DescribeAsync(CancellationToken cancellationToken)
    {
        var reply = await _invoker.IdempotentAsync("Describe", o => client.DescribeAsync(new DescribeBackboneRequest(), o), cancellationToken);
        identity.Observe(reply.Fingerprint);
        return reply;
    }

    /// <summary>Downloads the served graph (ExportGraph): its description and the ONNX bytes, checked against the size
    /// and SHA-256 announced first. One attempt: the caller retries the whole export.</summary>
    public async Task<(ServedGraph Graph, byte[] Model)> ExportGraphAsync(CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            using var call = client.ExportGraph(new ExportGraphRequest(), cancellationToken: cancellationToken);
            ServedGraph? graph = null;
            using var bytes = new MemoryStream();
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                graph ??= chunk.Graph;
                chunk.Data.WriteTo(bytes);
            }
            var model = bytes.ToArray();
            if (graph is null || model.LongLength != graph.ModelBytes
                || Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(model)) != graph.ModelSha256)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, "The backbone's graph arrived incomplete; retry the export."));
            }
            _invoker.Record("ExportGraph", StatusCode.OK, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            identity.Observe(graph.Fingerprint);
            return (graph, model);
        }
        catch (RpcException e)
        {
            _invoker.Record("ExportGraph", e.StatusCode, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            throw _invoker.Translate(e);
        }
    }

    /// <summary>The current backbone fingerprint: the one last seen, else asked for; null when the backbone cannot say.</summary>
    public async Task<string?> CurrentFingerprintAsync(CancellationToken cancellationToken)
    {
        if (identity.Fingerprint is { } known)
        {
            return known;
        }
        try
        {
            return (await DescribeAsync(cancellationToken)).Fingerprint;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable)
        {
            return null;
        }
    }
}
