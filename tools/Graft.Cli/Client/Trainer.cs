using Google.Protobuf;
using Grpc.Core;
using Graft.Cli.Data;
using Graft.V1;

namespace Graft.Cli.Client;

/// <summary>The outcome of one training run: the published version and how the time was spent.</summary>
public sealed record TrainResult(HeadVersionInfo Published, TimeSpan Total, TimeSpan Extraction);

/// <summary>Streams labelled images to the Gateway's TrainHead and follows its progress.</summary>
public static class Trainer
{
    public static async Task<TrainResult> TrainAsync(
        GatewaySession session, HeadSpec spec, IReadOnlyList<Example> examples, Action<TrainProgress> onProgress, CancellationToken ct)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? extraction = null;
        using var call = session.Client.TrainHead(session.Headers(), cancellationToken: ct);
        // Send and receive at once: the Gateway reports extraction progress while images still arrive.
        var send = SendAsync(call.RequestStream, spec, examples, ct);
        HeadVersionInfo? published = null;
        try
        {
            await foreach (var progress in call.ResponseStream.ReadAllAsync(ct))
            {
                if (progress.Phase is TrainPhase.Training or TrainPhase.Published) extraction ??= started.Elapsed;
                onProgress(progress);
                if (progress.Phase == TrainPhase.Published) published = progress.Published;
            }
        }
        catch (RpcException e)
        {
            _ = send.ContinueWith(t => t.Exception, TaskScheduler.Default); // the reply carries the real reason
            throw session.Translate(e, $"train head \"{spec.Name}\"");
        }
        try
        {
            await send;
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException && published is not null)
        {
            // The Gateway published and closed the call while the last writes were in flight: nothing was lost.
        }
        catch (RpcException e)
        {
            throw session.Translate(e, $"train head \"{spec.Name}\"");
        }
        return published is null
            ? throw new CliException($"The Gateway ended training of \"{spec.Name}\" without publishing a version.")
            : new TrainResult(published, started.Elapsed, extraction ?? started.Elapsed);
    }

    private static async Task SendAsync(IClientStreamWriter<TrainHeadRequest> stream, HeadSpec spec, IReadOnlyList<Example> examples, CancellationToken ct)
    {
        await stream.WriteAsync(new TrainHeadRequest { Spec = spec }, ct);
        foreach (var example in examples)
        {
            var image = new LabelledImage { Image = ByteString.CopyFrom(await File.ReadAllBytesAsync(example.Path, ct)) };
            if (example.Label is not null) image.Label = example.Label;
            else image.Value = example.Value ?? throw new InvalidOperationException("An example needs a label or a value.");
            await stream.WriteAsync(new TrainHeadRequest { Example = image }, ct);
        }
        await stream.CompleteAsync();
    }
}
