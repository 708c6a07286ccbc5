using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Graft.Heads.Registry;
using Graft.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Heads.Serving;

/// <summary>
/// Runs heads on one feature vector. Each head answers with the version active for the features' backbone fingerprint
/// (a head holds one per backbone, so old and new backbone replicas are both served during a rolling upgrade). When
/// that version is corrupt, the version that served that fingerprint before keeps serving (as Triton keeps the old model
/// when a reload fails), or on a fresh replica the newest loadable version of that fingerprint below it. A canary split
/// sends a share of the requests to its candidate; a shadow runs its candidate too and records whether it agreed.
/// </summary>
public sealed partial class HeadInference
{
    private const int DefaultTopK = 3;
    /// <summary>A regressor shadow agrees when within this fraction of the active version's training-target standard deviation.</summary>
    public const double RegressorAgreementFraction = 0.1;

    private readonly HeadRegistry _registry;
    private readonly HeadCache _cache;
    private readonly HeadsTelemetry _telemetry;
    private readonly VersionTraffic _traffic;
    private readonly ILogger<HeadInference> _logger;
    private readonly int _maxHeads;
    private readonly ConcurrentDictionary<(string Head, string Fingerprint), int> _lastGood = new();

    public HeadInference(HeadRegistry registry, HeadCache cache, HeadsTelemetry telemetry, VersionTraffic traffic, IOptions<HeadOptions> options, ILogger<HeadInference> logger)
    {
        _registry = registry;
        _cache = cache;
        _telemetry = telemetry;
        _traffic = traffic;
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

        var fingerprint = request.BackboneFingerprint;
        var snapshot = _registry.Current;
        var selected = new List<(HeadEntry Head, LoadedHead Loaded)>();
        var reply = new HeadPredictReply();
        if (names.Count == 0)
        {
            // Every head with a version for these features.
            foreach (var head in snapshot.Heads.Values.OrderBy(h => h.Name, StringComparer.Ordinal))
            {
                if (TryLoadServing(head, fingerprint) is not { } loaded)
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
                    selected.Add((head, loaded));
                }
            }
        }
        else
        {
            foreach (var name in names)
            {
                var head = _registry.RequireHead(name);
                if (head.ActiveFor(fingerprint) == 0)
                {
                    if (request.ReportUnready)
                    {
                        reply.Unready.Add(new HeadUnready { Head = name, ReadyFingerprints = { head.ActiveVersions.Keys.Order(StringComparer.Ordinal) } });
                        continue;
                    }
                    throw new HeadException(HeadErrorKind.FailedPrecondition, NotReady(head, fingerprint));
                }
                var loaded = TryLoadServing(head, fingerprint) ?? throw new HeadException(HeadErrorKind.FailedPrecondition,
                    $"Head '{name}' has no loadable version for backbone '{fingerprint}' (the registry log names the damaged files); retrain it or activate a good version.");
                if (Compatible(loaded.Manifest, request) is { } incompatibility)
                {
                    throw new HeadException(HeadErrorKind.FailedPrecondition, incompatibility);
                }
                selected.Add((head, loaded));
            }
        }
        if (reply.Unready.Count > 0)
        {
            return reply; // The caller fetches features from a backbone these heads are ready for and asks again.
        }

        var features = request.Features.ToArray();
        foreach (var (head, active) in selected)
        {
            var split = SplitFor(head, active, fingerprint);
            var answering = active;
            var role = VersionTraffic.Active;
            // A candidate fine-tuned from a cut point the request does not carry cannot answer: the active version does.
            if (split is { Split.Mode: SplitMode.Canary } canary && CutValues(request, canary.Candidate.Manifest.CutPoint) is not null
                && TakesCanary(head.Name, request.RequestId, canary.Split.Percent))
            {
                answering = canary.Candidate;
                role = VersionTraffic.Canary;
            }
            var output = Run(answering, features, CutValues(request, answering.Manifest.CutPoint)!, topK, role);
            reply.Outputs.Add(output);
            if (split is { Split.Mode: SplitMode.Shadow } shadow && CutValues(request, shadow.Candidate.Manifest.CutPoint) is { } shadowCut)
            {
                RunShadow(shadow.Candidate, active.Manifest, output, features, shadowCut, topK);
            }
        }
        return reply;
    }

    /// <summary>The version that serves (or would serve) this head for a backbone, without loading anything; 0 when none
    /// can. No fingerprint: the backbone of the version last activated.</summary>
    public int ServingVersion(HeadEntry head, string? fingerprint = null)
    {
        var fp = string.IsNullOrEmpty(fingerprint) ? head.DefaultFingerprint : fingerprint;
        return fp is null ? 0 : Candidates(head, fp).FirstOrDefault()?.Version ?? 0;
    }

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

    /// <summary>The activations a version takes: none for a frozen-feature version; null when the request lacks them.</summary>
    private static float[]? CutValues(HeadPredictRequest request, string cutPoint)
        => cutPoint.Length == 0 ? [] : request.CutFeatures.FirstOrDefault(c => c.CutPoint == cutPoint)?.Values.ToArray();


    /// <summary>True when a request takes the canary side: a stable hash of (head, request id) when an id is given, so the
    /// same id always lands on the same side; otherwise a random draw.</summary>
    public static bool TakesCanary(string head, string requestId, double percent)
    {
        double draw;
        if (string.IsNullOrEmpty(requestId))
        {
            draw = Random.Shared.NextDouble();
        }
        else
        {
            Span<byte> hash = stackalloc byte[32];
            SHA256.HashData(Encoding.UTF8.GetBytes(head + "\n" + requestId), hash);
            draw = (BitConverter.ToUInt64(hash) >> 11) * (1.0 / (1UL << 53));
        }
        return draw * 100 < percent;
    }

    private static string NotReady(HeadEntry head, string fingerprint)
    {
        var ready = head.ActiveVersions.Keys.Order(StringComparer.Ordinal).ToList();
        var trained = head.Find(head.DesiredVersion)?.Manifest?.BackboneFingerprint;
        return ready.Count == 1 && trained == ready[0]
            ? $"Head '{head.Name}' v{head.DesiredVersion} was trained on backbone fingerprint '{ready[0]}', but the features come from '{fingerprint}'; retrain the head on the current backbone."
            : $"Head '{head.Name}' has no version for backbone fingerprint '{fingerprint}' (it is ready for {(ready.Count == 0 ? "none" : string.Join(", ", ready))}); retrain the head on the current backbone.";
    }

    private HeadOutput Run(LoadedHead head, float[] features, float[] cut, int topK, string role)
    {
        var started = VersionTraffic.Start();
        var current = head;
        HeadOutput output;
        // A concurrent eviction may dispose the head between lookup and run; reload once and retry.
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
        _traffic.Answered(current.Manifest.Name, current.Manifest.Version, role, System.Diagnostics.Stopwatch.GetElapsedTime(started));
        return output;
    }

    /// <summary>Runs the shadow candidate and records whether it agreed with the active answer. Never fails the request.</summary>
    private void RunShadow(LoadedHead candidate, HeadManifest active, HeadOutput activeOutput, float[] features, float[] cut, int topK)
    {
        try
        {
            var shadow = Run(candidate, features, cut, topK, VersionTraffic.Shadow);
            var agreed = active.Kind == HeadKind.Regressor
                ? Math.Abs(shadow.Value - activeOutput.Value) <= RegressorAgreementFraction * Math.Max(active.TargetStd, 1e-12)
                : shadow.Top.FirstOrDefault()?.Label == activeOutput.Top.FirstOrDefault()?.Label;
            _traffic.Compared(candidate.Manifest.Name, candidate.Manifest.Version, agreed);
        }
        catch (HeadException e)
        {
            LogShadowFailed(_logger, candidate.Manifest.Name, candidate.Manifest.Version, e.Message);
        }
    }

    /// <summary>The head's split and its loaded candidate, when the split applies to these features.</summary>
    private (TrafficSplit Split, LoadedHead Candidate)? SplitFor(HeadEntry head, LoadedHead active, string fingerprint)
    {
        if (head.Serving?.Split is not { } split || split.Version == active.Manifest.Version
            || head.Find(split.Version) is not { IsUsable: true } entry || entry.Manifest!.BackboneFingerprint != fingerprint
            || entry.Manifest.InputDimension != active.Manifest.InputDimension)
        {
            return null;
        }
        try
        {
            return (split, _cache.GetOrLoad(entry));
        }
        catch (InvalidDataException e)
        {
            _telemetry.LoadFailed();
            _registry.ReportLoadFailure(entry.Name, entry.Version, e.Message);
            return null; // A broken candidate never harms the active answers.
        }
    }

    private LoadedHead? TryLoadServing(HeadEntry head, string fingerprint)
    {
        foreach (var entry in Candidates(head, fingerprint))
        {
            try
            {
                var loaded = _cache.GetOrLoad(entry);
                if (_lastGood.TryGetValue((head.Name, fingerprint), out var previous) && previous != entry.Version)
                {
                    LogServing(_logger, head.Name, entry.Version, previous, fingerprint);
                }
                _lastGood[(head.Name, fingerprint)] = entry.Version;
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

    /// <summary>Versions that may serve <paramref name="fingerprint"/>, best first: the active one, the one that served
    /// before, then older ones of the same backbone.</summary>
    private IEnumerable<VersionEntry> Candidates(HeadEntry head, string fingerprint)
    {
        var desiredVersion = head.ActiveFor(fingerprint);
        if (desiredVersion == 0)
        {
            yield break;
        }
        var desired = head.Find(desiredVersion);
        if (desired is { IsUsable: true } && desired.Manifest!.BackboneFingerprint == fingerprint)
        {
            yield return desired;
        }
        if (_lastGood.TryGetValue((head.Name, fingerprint), out var last) && last != desiredVersion
            && head.Find(last) is { IsUsable: true } previous && previous.Manifest!.BackboneFingerprint == fingerprint)
        {
            yield return previous;
        }
        foreach (var older in head.Versions.Where(v => v.Version < desiredVersion && v.Version != last && v.IsUsable && v.Manifest!.BackboneFingerprint == fingerprint).Reverse())
        {
            yield return older;
        }
    }

    [LoggerMessage(EventId = 3200, Level = LogLevel.Information, Message = "Head {Name} now serves version {Version} (was {Previous}) for backbone {Fingerprint}")]
    private static partial void LogServing(ILogger logger, string name, int version, int previous, string fingerprint);

    [LoggerMessage(EventId = 3703, Level = LogLevel.Warning, Message = "Shadow version {Version} of head {Name} failed; the active answer was returned: {Reason}")]
    private static partial void LogShadowFailed(ILogger logger, string name, int version, string reason);
}
