using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Graft.Bench.Data;
using Graft.V1;

namespace Graft.Bench.Hosting;

/// <summary>The gRPC calls the benchmark makes, over the public contracts only.</summary>
public sealed class GraftCalls(GraftStack stack)
{
    private static readonly TimeSpan LongCall = TimeSpan.FromMinutes(30);

    public async Task<ExtractReply> ExtractAsync(FashionImage image) =>
        await stack.Backbone.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image.Png) },
            deadline: DateTime.UtcNow.AddMinutes(2));

    public async Task<PredictReply> PredictAsync(FashionImage image, IEnumerable<string> heads)
    {
        var request = new PredictRequest { Image = ByteString.CopyFrom(image.Png), TopK = 1 };
        request.Heads.AddRange(heads);
        return await stack.Gateway.PredictAsync(request, deadline: DateTime.UtcNow.AddMinutes(2));
    }

    public sealed record Trained(HeadVersionInfo Version, double ExtractSeconds, double TotalSeconds);

    /// <summary>Gateway TrainHead: the spec, then labelled images; reads progress until the version is published.</summary>
    public async Task<Trained> TrainThroughGatewayAsync(HeadSpec spec, IReadOnlyList<FashionImage> images, IReadOnlyList<double>? values)
    {
        var timer = Stopwatch.StartNew();
        using var call = stack.Gateway.TrainHead(GraftStack.AdminHeaders, deadline: DateTime.UtcNow + LongCall);
        var reading = ReadProgressAsync(call.ResponseStream, timer);
        await call.RequestStream.WriteAsync(new TrainHeadRequest { Spec = spec });
        for (var i = 0; i < images.Count; i++)
        {
            var example = new LabelledImage { Image = ByteString.CopyFrom(images[i].Png) };
            if (values is null) example.Label = images[i].ClassName;
            else example.Value = values[i];
            await call.RequestStream.WriteAsync(new TrainHeadRequest { Example = example });
        }
        await call.RequestStream.CompleteAsync();
        var (published, extractSeconds) = await reading;
        return new Trained(published, extractSeconds, timer.Elapsed.TotalSeconds);
    }

    /// <summary>HeadService Train straight from feature rows, in messages of at most about 1 MiB.</summary>
    public async Task<Trained> TrainOnFeaturesAsync(HeadSpec spec, IReadOnlyList<FeatureRow> rows)
    {
        var timer = Stopwatch.StartNew();
        using var call = stack.Heads.Train(deadline: DateTime.UtcNow + LongCall);
        var reading = ReadProgressAsync(call.ResponseStream, timer);
        await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = spec });
        var perMessage = Math.Max(1, (1 << 20) / (4 * Math.Max(1, rows[0].Features.Count)));
        foreach (var chunk in rows.Chunk(perMessage))
        {
            var batch = new FeatureRows();
            batch.Rows.AddRange(chunk);
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = batch });
        }
        await call.RequestStream.CompleteAsync();
        var (published, _) = await reading;
        return new Trained(published, 0, timer.Elapsed.TotalSeconds);
    }

    private static async Task<(HeadVersionInfo Published, double ExtractSeconds)> ReadProgressAsync(
        IAsyncStreamReader<TrainProgress> progress, Stopwatch timer)
    {
        double? extractEnd = null;
        HeadVersionInfo? published = null;
        while (await progress.MoveNext(CancellationToken.None))
        {
            var p = progress.Current;
            if (p.Phase is TrainPhase.Training or TrainPhase.Published) extractEnd ??= timer.Elapsed.TotalSeconds;
            if (p.Phase == TrainPhase.Published) published = p.Published;
        }
        return (published ?? throw new InvalidOperationException("Training ended without a PUBLISHED message."), extractEnd ?? 0);
    }
}
