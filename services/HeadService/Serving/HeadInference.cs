using System.Collections.Concurrent;
using Graft.Heads.Registry;
using Graft.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Heads.Serving;

/// <summary>
/// Runs heads on one feature vector. Picks each head's serving version: the one its pointer names, unless that
/// version is corrupt, in which case the version that served before keeps serving (as Triton keeps the old model
/// when a reload fails), or on a fresh replica the newest loadable version below it.
/// </summary>
public sealed partial class HeadInference
{
    private const int DefaultTopK = 3;
    private readonly HeadRegistry _registry;
    private readonly HeadCache _cache;
    private readonly HeadsTelemetry _telemetry;
    private readonly ILogger<HeadInference> _logger;
    private readonly int _maxHeads;
    private readonly ConcurrentDictionary<string, int> _lastGood = new(StringComparer.Ordinal);

    public HeadInference(HeadRegistry registry, HeadCache cache, HeadsTelemetry telemetry, IOptions<HeadOptions> options, ILogger<HeadInference> logger)
    {
        _registry = registry;
        _cache = cache;
        _telemetry = telemetry;
        _logger = logger;
        _maxHeads = options.Value.MaxHeadsPerPredict;
        registry.Changed += cache.Prune;
    }

    public HeadPredictReply Predict(HeadPredictRequest request)
    {
        if (request.Features.Count == 0)
        {
            throw HeadException.Invalid("features is empty; send the feature vector the backbone returned.");
        }
        for (var i = 0; i < request.Features.Count; i++)
        {
            if (!float.IsFinite(request.Features[i]))
            {
                throw HeadException.Invalid($"features[{i}] is {request.Features[i]}; features must be finite numbers.");
            }
        }
        if (string.IsNullOrWhiteSpace(request.BackboneFingerprint))
        {
            throw HeadException.Invalid("backbone_fingerprint is required: heads only accept features from the backbone they were trained on.");
        }
        if (request.TopK < 0)
        {
            throw HeadException.Invalid($"top_k is {request.TopK}; it must be 0 (default {DefaultTopK}) or positive.");
        }
        var topK = request.TopK == 0 ? DefaultTopK : request.TopK;
        CheckCutFeatures(request);
        var names = request.Heads.Distinct(StringComparer.Ordinal).ToList();
        if (names.Count > _maxHeads)
        {
            throw HeadException.Invalid($"The request names {names.Count} distinct heads; at most {_maxHeads} are allowed per Predict (Graft:Heads:MaxHeadsPerPredict).");
        }
        foreach (var name in names)
        {
            if (HeadName.Problem(name) is { } problem)
            {
                throw HeadException.Invalid(problem);
            }
        }

        var snapshot = _registry.Current;
        var selected = new List<LoadedHead>();
        var reply = new HeadPredictReply();
        if (names.Count == 0)
        {
            // Every active head that accepts these features.
            foreach (var head in snapshot.Heads.Values.OrderBy(h => h.Name, StringComparer.Ordinal))
            {
                if (TryLoadServing(head) is not { } loaded)
                {
                    continue;
                }
                if (Compatible(loaded.Manifest, request) is { } reason)
                {
                    // Not silently: the reply says which active heads did not answer and why.
                    reply.Skipped.Add(new SkippedHead { Head = head.Name, Version = loaded.Manifest.Version, Reason = reason });
                }
                else
                {
                    selected.Add(loaded);
                }
            }
        }
        else
        {
            foreach (var name in names)
            {
                var head = _registry.RequireHead(name);
                var loaded = TryLoadServing(head) ?? throw new HeadException(HeadErrorKind.FailedPrecondition,
                    $"Head '{name}' has no loadable version (the registry log names the damaged files); retrain it or activate a good version.");
                if (Compatible(loaded.Manifest, request) is { } incompatibility)
                {
                    throw new HeadException(HeadErrorKind.FailedPrecondition, incompatibility);
                }
                selected.Add(loaded);
            }
        }

        var features = request.Features.ToArray();
        foreach (var head in selected)
        {
            var current = head;
            HeadOutput output;
            // A concurrent eviction may dispose the head between lookup and run; reload once and retry.
            var cut = CutValues(request, current.Manifest.CutPoint);
            for (var attempt = 0; !current.TryRun(features, cut, topK, out output); attempt++)
            {
                var entry = _registry.Current.Heads.GetValueOrDefault(current.Manifest.Name)?.Find(current.Manifest.Version);
                if (entry is null || attempt > 3)
                {
                    throw new HeadException(HeadErrorKind.Aborted, $"Head '{current.Manifest.Name}' changed while answering; retry the call.");
                }
                current = _cache.GetOrLoad(entry);
            }
            _telemetry.Predicted(current.Manifest.Kind.Name());
            reply.Outputs.Add(output);
        }
        return reply;
    }

    /// <summary>The version that serves (or would serve) this head, without loading anything; 0 when none can.</summary>
    public int ServingVersion(HeadEntry head) => Candidates(head).FirstOrDefault()?.Version ?? 0;

    /// <summary>Why features from this request cannot go into this head, or null when they can.</summary>
    public static string? Compatible(HeadManifest manifest, HeadPredictRequest request)
    {
        if (!string.Equals(manifest.BackboneFingerprint, request.BackboneFingerprint, StringComparison.Ordinal))
        {
            return $"Head '{manifest.Name}' v{manifest.Version} was trained on backbone fingerprint '{manifest.BackboneFingerprint}', but the features come from '{request.BackboneFingerprint}'; retrain the head on the current backbone.";
        }
        if (manifest.InputDimension != request.Features.Count)
        {
            return $"Head '{manifest.Name}' v{manifest.Version} takes {manifest.InputDimension} features, but {request.Features.Count} were sent.";
        }
        if (manifest.FineTuned)
        {
            var cut = request.CutFeatures.FirstOrDefault(c => c.CutPoint == manifest.CutPoint);
            if (cut is null)
            {
                return $"Head '{manifest.Name}' v{manifest.Version} fine-tunes the backbone from cut point '{manifest.CutPoint}', so it needs the activations there: " +
                    $"send them in cut_features (Backbone.Extract with cut_points [\"{manifest.CutPoint}\"] returns them from the same run as the features; the Gateway does this).";
            }
            if (!cut.Shape.SequenceEqual(manifest.CutShape))
            {
                return $"Head '{manifest.Name}' v{manifest.Version} takes {manifest.CutPoint} activations of shape [{string.Join(", ", manifest.CutShape)}], but cut_features has [{string.Join(", ", cut.Shape)}].";
            }
        }
        return null;
    }

    /// <summary>Every cut_features entry names a cut point once, and holds finite values matching its shape.</summary>
    private static void CheckCutFeatures(HeadPredictRequest request)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var k = 0; k < request.CutFeatures.Count; k++)
        {
            var cut = request.CutFeatures[k];
            if (string.IsNullOrEmpty(cut.CutPoint) || !seen.Add(cut.CutPoint))
            {
                throw HeadException.Invalid(string.IsNullOrEmpty(cut.CutPoint)
                    ? $"cut_features[{k}].cut_point is empty; name the cut point the activations come from."
                    : $"cut_features[{k}] repeats cut point '{cut.CutPoint}'; send each cut point once.");
            }
            var expected = cut.Shape.Count == 0 || cut.Shape.Any(d => d <= 0) ? -1 : cut.Shape.Aggregate(1L, (a, d) => a * d);
            if (expected != cut.Values.Count)
            {
                throw HeadException.Invalid(
                    $"cut_features[{k}] ({cut.CutPoint}) has {cut.Values.Count} values but its shape [{string.Join(", ", cut.Shape)}] needs {(expected < 0 ? "positive dimensions" : expected.ToString(System.Globalization.CultureInfo.InvariantCulture))}.");
            }
            for (var i = 0; i < cut.Values.Count; i++)
            {
                if (!float.IsFinite(cut.Values[i]))
                {
                    throw HeadException.Invalid($"cut_features[{k}] ({cut.CutPoint}) value {i} is {cut.Values[i]}; activations must be finite numbers.");
                }
            }
        }
    }

    private static float[] CutValues(HeadPredictRequest request, string cutPoint)
        => cutPoint.Length == 0 ? [] : request.CutFeatures.First(c => c.CutPoint == cutPoint).Values.ToArray();

    private LoadedHead? TryLoadServing(HeadEntry head)
    {
        foreach (var entry in Candidates(head))
        {
            try
            {
                var loaded = _cache.GetOrLoad(entry);
                if (_lastGood.TryGetValue(head.Name, out var previous) && previous != entry.Version)
                {
                    LogServing(_logger, head.Name, entry.Version, previous);
                }
                _lastGood[head.Name] = entry.Version;
                return loaded;
            }
            catch (InvalidDataException e)
            {
                _telemetry.LoadFailed();
                _registry.ReportLoadFailure(entry.Name, entry.Version, e.Message);
            }
        }
        return null;
    }

    private IEnumerable<VersionEntry> Candidates(HeadEntry head)
    {
        var desired = head.Find(head.DesiredVersion);
        if (desired is { IsUsable: true })
        {
            yield return desired;
        }
        if (_lastGood.TryGetValue(head.Name, out var last) && last != head.DesiredVersion && head.Find(last) is { IsUsable: true } previous)
        {
            yield return previous;
        }
        foreach (var older in head.Versions.Where(v => v.Version < head.DesiredVersion && v.Version != last && v.IsUsable).Reverse())
        {
            yield return older;
        }
    }

    [LoggerMessage(EventId = 3200, Level = LogLevel.Information, Message = "Head {Name} now serves version {Version} (was {Previous})")]
    private static partial void LogServing(ILogger logger, string name, int version, int previous);
}
