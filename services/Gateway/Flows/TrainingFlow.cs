using System.Diagnostics;
using Graft.Gateway.Downstream;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Flows;

/// <summary>TrainHead: buffers the labelled images (the total is known only when the client stream ends), turns them
/// into features through the backbone in concurrent batches, then streams spec + rows to HeadService and relays its progress.</summary>
public sealed partial class TrainingFlow(
    BackboneDownstream backbone, HeadsDownstream heads, IOptions<GatewayOptions> options, ILogger<TrainingFlow> logger)
{
    private const int RowsPerMessage = 256;

    public async Task TrainAsync(IAsyncStreamReader<TrainHeadRequest> requests, IServerStreamWriter<TrainProgress> progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (spec, examples) = await ReadAsync(requests, cancellationToken);
        LogTrainingStarted(logger, spec.Name, spec.Kind, examples.Count);

        var rows = await ExtractAsync(spec, examples, progress, clock, cancellationToken);
        var published = await TrainOnHeadsAsync(spec, rows, progress, clock, cancellationToken);
        LogTrainingPublished(logger, published.Name, published.Version, clock.Elapsed.TotalSeconds);
    }

    private async Task<(HeadSpec Spec, List<LabelledImage> Examples)> ReadAsync(IAsyncStreamReader<TrainHeadRequest> requests, CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (!await requests.MoveNext(cancellationToken))
        {
            throw Invalid("the stream was empty: send a HeadSpec first, then the labelled examples.");
        }
        if (requests.Current.ItemCase != TrainHeadRequest.ItemOneofCase.Spec)
        {
            throw Invalid("the first TrainHead message must be the spec (name, kind, hyperparameters); the examples follow it.");
        }
        var spec = requests.Current.Spec.Clone();
        if (string.IsNullOrWhiteSpace(spec.Name))
        {
            throw Invalid("spec.name is required (e.g. \"length-cm\").");
        }
        if (spec.Kind == HeadKind.Unspecified)
        {
            throw Invalid("spec.kind is required: HEAD_KIND_REGRESSOR or HEAD_KIND_CLASSIFIER.");
        }

        var examples = new List<LabelledImage>();
        long bytes = 0;
        while (await requests.MoveNext(cancellationToken))
        {
            var item = requests.Current;
            var number = examples.Count + 1;
            if (item.ItemCase != TrainHeadRequest.ItemOneofCase.Example)
            {
                throw Invalid($"message {number + 1} is a second spec; only the first message may be the spec.");
            }
            var example = item.Example;
            CheckExample(spec.Kind, example, number);
            bytes += example.Image.Length;
            if (examples.Count + 1 > o.MaxTrainExamples || bytes > o.MaxTrainBytes)
            {
                throw new RpcException(new Status(StatusCode.ResourceExhausted,
                    $"too many examples for one TrainHead call: the gateway accepts at most {o.MaxTrainExamples} images and {o.MaxTrainBytes} bytes " +
                    "(Graft:Gateway:MaxTrainExamples / MaxTrainBytes). Train on fewer images, or train from features through HeadService."));
            }
            examples.Add(example);
        }
        if (examples.Count == 0)
        {
            throw Invalid("no examples followed the spec: send at least one labelled image.");
        }
        return (spec, examples);
    }

    private static void CheckExample(HeadKind kind, LabelledImage example, int number)
    {
        if (example.Image.IsEmpty)
        {
            throw Invalid($"example {number} has no image bytes.");
        }
        switch (kind)
        {
            case HeadKind.Regressor when example.TargetCase != LabelledImage.TargetOneofCase.Value:
                throw Invalid($"example {number}: a regressor needs a numeric target ('value'), not {Describe(example.TargetCase)}.");
            case HeadKind.Regressor when !double.IsFinite(example.Value):
                throw Invalid($"example {number}: the target value must be a finite number (got {example.Value}).");
            case HeadKind.Classifier when example.TargetCase != LabelledImage.TargetOneofCase.Label:
                throw Invalid($"example {number}: a classifier needs a string 'label', not {Describe(example.TargetCase)}.");
            case HeadKind.Classifier when string.IsNullOrWhiteSpace(example.Label):
                throw Invalid($"example {number}: the label is empty.");
        }

        static string Describe(LabelledImage.TargetOneofCase c) => c switch
        {
            LabelledImage.TargetOneofCase.None => "no target",
            LabelledImage.TargetOneofCase.Value => "a numeric value",
            _ => "a label",
        };
    }

    private async Task<List<FeatureRow>> ExtractAsync(
        HeadSpec spec, List<LabelledImage> examples, IServerStreamWriter<TrainProgress> progress, Stopwatch clock, CancellationToken cancellationToken)
    {
        var batch = options.Value.ExtractConcurrency;
        var rows = new List<FeatureRow>(examples.Count);
        await progress.WriteAsync(Extracting(0, examples.Count, clock), cancellationToken);
        // One training set never mixes features of two backbones: the job is pinned to the backbone the spec names, else
        // to the one that answers the first image; during a rolling upgrade every other image is fetched from a replica
        // of that backbone (one of another backbone refuses at once and the Extract is asked again, boundedly). The first image
        // is asked for again below; the backbone's cache answers that for free.
        var fingerprint = string.IsNullOrEmpty(spec.BackboneFingerprint)
            ? (await ExtractOneAsync(examples[0], 1, null, cancellationToken)).Fingerprint
            : spec.BackboneFingerprint;

        for (var start = 0; start < examples.Count; start += batch)
        {
            var count = Math.Min(batch, examples.Count - start);
            // Concurrent Extract calls let the backbone batch them; its cache makes a repeated image free.
            var replies = await Task.WhenAll(Enumerable.Range(start, count).Select(i => ExtractOneAsync(examples[i], i + 1, fingerprint, cancellationToken)));
            for (var k = 0; k < count; k++)
            {
                var reply = replies[k];
                var example = examples[start + k];
                var row = new FeatureRow { Features = { reply.Features } };
                if (example.TargetCase == LabelledImage.TargetOneofCase.Value)
                {
                    row.Value = example.Value;
                }
                else
                {
                    row.Label = example.Label;
                }
                rows.Add(row);
            }
            await progress.WriteAsync(Extracting(start + count, examples.Count, clock), cancellationToken);
        }

        spec.BackboneFingerprint = fingerprint;
        return rows;
    }

    private async Task<ExtractReply> ExtractOneAsync(LabelledImage example, int number, string? fingerprint, CancellationToken cancellationToken)
    {
        try
        {
            return fingerprint is null
                ? await backbone.ExtractAsync(example.Image, cancellationToken)
                : await backbone.ExtractFromAsync(example.Image, fingerprint, options.Value.FingerprintAttempts, cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            throw Invalid($"example {number}: {e.Status.Detail}");
        }
    }

    private Task<HeadVersionInfo> TrainOnHeadsAsync(
        HeadSpec spec, List<FeatureRow> rows, IServerStreamWriter<TrainProgress> progress, Stopwatch clock, CancellationToken cancellationToken)
        => heads.TrainAsync(spec, rows, RowsPerMessage, async step =>
        {
            step.ElapsedSeconds = clock.Elapsed.TotalSeconds;
            await progress.WriteAsync(step, cancellationToken);
        }, cancellationToken);

    private static TrainProgress Extracting(int done, int total, Stopwatch clock) => new()
    {
        Phase = TrainPhase.Extracting,
        ImagesDone = done,
        ImagesTotal = total,
        ElapsedSeconds = clock.Elapsed.TotalSeconds,
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Training head {Name} ({Kind}) from {Count} images")]
    private static partial void LogTrainingStarted(ILogger logger, string name, HeadKind kind, int count);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Head {Name} v{Version} published after {Seconds:0.0} s")]
    private static partial void LogTrainingPublished(ILogger logger, string name, int version, double seconds);
}
