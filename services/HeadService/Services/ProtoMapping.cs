using Google.Protobuf.WellKnownTypes;
using Graft.Heads.Registry;
using Graft.V1;

namespace Graft.Heads.Services;

/// <summary>Translations between registry records and the wire types.</summary>
internal static class ProtoMapping
{
    public static HeadVersionInfo ToVersionInfo(VersionEntry entry)
    {
        var info = new HeadVersionInfo { Name = entry.Name, Version = entry.Version, LoadError = entry.Error ?? "" };
        return entry.Manifest is { } m ? Fill(info, m) : info;
    }

    public static HeadVersionInfo ToVersionInfo(HeadManifest manifest) => Fill(new HeadVersionInfo(), manifest);

    /// <summary>A head as listed: the version serving <paramref name="currentFingerprint"/> (or the last activated one),
    /// every backbone it is ready for, its split and this replica's per-version traffic. <paramref name="servingVersion"/>
    /// gives the version serving a fingerprint (null: the head's default backbone).</summary>
    public static HeadInfo ToHeadInfo(HeadEntry head, Func<string?, int> servingVersion, string currentFingerprint, IEnumerable<HeadVersionTraffic> traffic)
    {
        var ready = currentFingerprint.Length > 0 && head.ActiveFor(currentFingerprint) > 0;
        var info = new HeadInfo
        {
            Name = head.Name,
            // The version serving the backbone in use when the head is ready for it; otherwise the last activated one.
            ActiveVersion = servingVersion(ready ? currentFingerprint : null),
            PointerVersion = head.PointerVersion,
        };
        info.Versions.AddRange(head.Versions.Select(ToVersionInfo));
        info.Stale = currentFingerprint.Length > 0 && !ready && info.ActiveVersion > 0;
        foreach (var (fingerprint, version) in head.ActiveVersions.OrderBy(a => a.Key, StringComparer.Ordinal))
        {
            info.Backbones.Add(new HeadBackboneReadiness { BackboneFingerprint = fingerprint, Version = version, ServingVersion = servingVersion(fingerprint) });
        }
        if (head.Serving?.Split is { } split)
        {
            var fingerprint = head.Find(split.Version)?.Manifest?.BackboneFingerprint ?? "";
            info.Split = new HeadTrafficSplit
            {
                Mode = split.Mode == SplitMode.Canary ? HeadSplitMode.Canary : HeadSplitMode.Shadow,
                CandidateVersion = split.Version,
                Percent = split.Percent,
                BackboneFingerprint = fingerprint,
                ActiveVersion = head.ActiveFor(fingerprint),
            };
        }
        info.Traffic.AddRange(traffic);
        return info;
    }

    private static HeadVersionInfo Fill(HeadVersionInfo info, HeadManifest m)
    {
        info.Name = m.Name;
        info.Version = m.Version;
        info.Kind = m.Kind;
        info.Labels.AddRange(m.Labels);
        info.InputDimension = m.InputDimension;
        info.BackboneFingerprint = m.BackboneFingerprint;
        info.Created = Timestamp.FromDateTimeOffset(m.Created);
        info.SizeBytes = m.WeightsBytes + m.TailBytes;
        var h = m.Hyperparameters;
        info.Spec = new HeadSpec
        {
            Name = m.Name, Kind = info.Kind, BackboneFingerprint = m.BackboneFingerprint, Description = m.Description,
            Epochs = h.Epochs, LearningRate = h.LearningRate, BatchSize = h.BatchSize, WeightDecay = h.WeightDecay,
            ValidationFraction = h.ValidationFraction, Patience = h.Patience, Seed = h.Seed, Dropout = h.Dropout,
            Depth = m.Depth, DepthReason = m.DepthReason, Dataset = m.Dataset,
        };
        if (m.KeepTrainingData is { } keep)
        {
            info.Spec.KeepTrainingData = keep;
        }
        if (m.Augment > 0)
        {
            info.Spec.Augment = m.Augment;
        }
        if (m.FineTuned)
        {
            info.Spec.TailLearningRate = h.TailLearningRate;
        }
        info.CutPoint = m.CutPoint;
        info.CutShape.AddRange(m.CutShape);
        info.DepthReason = m.DepthReason;
        if (h.HiddenSpecified)
        {
            info.Spec.Hidden = new HiddenLayers();
            info.Spec.Hidden.Sizes.AddRange(h.HiddenSizes);
        }
        var x = m.Metrics;
        info.Metrics = new HeadMetrics
        {
            TrainRows = x.TrainRows, ValidationRows = x.ValidationRows, EpochsRun = x.EpochsRun, TrainingSeconds = x.TrainingSeconds,
            FinalTrainLoss = x.FinalTrainLoss, ValidationLoss = x.ValidationLoss, Mae = x.Mae, Rmse = x.Rmse, R2 = x.R2,
            BaselineMae = x.BaselineMae, Accuracy = x.Accuracy, BaselineAccuracy = x.BaselineAccuracy,
        };
        info.Metrics.PerClass.AddRange(x.PerClass.Select(c => new ClassMetrics { Label = c.Label, Precision = c.Precision, Recall = c.Recall, Support = c.Support }));
        info.Metrics.ConfusionMatrix.AddRange(x.ConfusionMatrix);
        return info;
    }
}
