using System.ComponentModel.DataAnnotations;
using Graft.Gateway.Downstream;

namespace Graft.Gateway;

/// <summary>Gateway settings (configuration section <c>Graft:Gateway</c>, environment form <c>Graft__Gateway__AdminToken</c>).</summary>
public sealed class GatewayOptions : IValidatableObject
{
    public const string Section = "Graft:Gateway";

    /// <summary>BackboneService address: <c>http://host:port</c>, a comma-separated list of such addresses
    /// (round-robin over them), or <c>dns:///backbone-headless:5110</c> (a Kubernetes headless Service).</summary>
    [Required]
    public string BackboneAddress { get; set; } = "http://127.0.0.1:5110";

    /// <summary>HeadService address, in the same forms as <see cref="BackboneAddress"/>.</summary>
    [Required]
    public string HeadsAddress { get; set; } = "http://127.0.0.1:5120";

    /// <summary>Bearer token for admin calls (TrainHead, DeleteHead, ActivateHead). Empty: admin calls are refused
    /// unless <see cref="AllowUnauthenticatedAdmin"/> is set.</summary>
    public string? AdminToken { get; set; }

    /// <summary>Bearer token for Predict, PredictStream and the read calls. Empty: those calls are open.
    /// The admin token is accepted wherever the predict token is.</summary>
    public string? PredictToken { get; set; }

    /// <summary>Explicit opt-in for open local development: admin calls need no token when none is configured.</summary>
    public bool AllowUnauthenticatedAdmin { get; set; }

    /// <summary>Longest a single downstream attempt may take (the client's deadline still wins when shorter).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")]
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Retries after a failed idempotent attempt (UNAVAILABLE or attempt timeout). 0 disables retries.</summary>
    [Range(0, 10)]
    public int MaxRetries { get; set; } = 2;

    /// <summary>First retry delay; later ones grow exponentially, with jitter.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Circuit breaker: fraction of failed calls in the sampling window that opens it.</summary>
    [Range(0.01, 1.0)]
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>Circuit breaker: calls needed in the sampling window before it may open.</summary>
    [Range(2, 10000)]
    public int BreakerMinimumThroughput { get; set; } = 4;

    /// <summary>Circuit breaker: the rolling window over which the failure ratio is measured.</summary>
    [Range(typeof(TimeSpan), "00:00:00.500", "00:10:00")]
    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an open breaker rejects calls before letting a trial call through.</summary>
    [Range(typeof(TimeSpan), "00:00:00.500", "00:10:00")]
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Longest pause between reconnection attempts to a dead replica; short, so a restarted replica is used within seconds.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:02:00")]
    public TimeSpan MaxReconnectBackoff { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>TrainHead buffers the examples before extraction (the total is known only at the end of the stream):
    /// most examples accepted in one call.</summary>
    [Range(1, 10_000_000)]
    public int MaxTrainExamples { get; set; } = 100_000;

    /// <summary>Most encoded image bytes buffered for one TrainHead call.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxTrainBytes { get; set; } = 2L << 30;

    /// <summary>During a rolling upgrade, backbone replicas of several fingerprints share one address: how many times an
    /// Extract is asked again (a replica of another fingerprint refuses at once, before any work) to reach a replica of the
    /// fingerprint a training job is pinned to, or that a requested head is ready for.</summary>
    [Range(1, 1000)]
    public int FingerprintAttempts { get; set; } = 32;

    /// <summary>Extract calls in flight at once while a head trains (lets the backbone fill its batches).</summary>
    [Range(1, 256)]
    public int ExtractConcurrency { get; set; } = 16;

    /// <summary>Most values (floats) one TrainHead call may send to HeadService: images x (1 + augment) views x the values
    /// per row (the final features, or the cut-point activations of a fine-tuning depth: 25,088 for ResNet18's
    /// last-block). Checked before any extraction, so a job too large for HeadService (whose own bound is
    /// <c>Graft:Heads:MaxTrainingValues</c>, the same default) fails at once, not after minutes of backbone runs.</summary>
    [Range(1, long.MaxValue)]
    public long MaxTrainingValues { get; set; } = 200_000_000;

    // The depth = auto rule, from the fine-tuning curve in bench/RESULTS.md (Fashion-MNIST, the bench's split, HeadService's
    // default recipe: 15 epochs on every image, tail lr 3e-4). The last block beat every frozen depth at each size
    // measured: 71.8 / 82.0 / 85.8 % at 10 / 30 / 100 images per class against 70.5 / 80.0 / 82.6 % for the best frozen
    // head, so it starts at 10 (the smallest size measured; below it the frozen MLP, which trains in a second). The
    // last stage lost to the last block at every size measured at that tail rate (68.4 / 77.7 / 81.8 %) and matched it
    // at 100 per class at its own default 1e-4 (86.0 against 85.8 %): auto takes it only from AutoLastStagePerClass, set
    // beyond the measured curve. Regressors: measured at 1,000 images only (last block MAE
    // 7.38 cm against 8.07 for the MLP); ten times the per-class thresholds, as for a ten-class set.

    /// <summary>depth = auto, classifiers: images in the smallest class from which the last residual block is fine-tuned
    /// (below it: frozen features with an MLP head).</summary>
    [Range(1, 1_000_000)]
    public int AutoLastBlockPerClass { get; set; } = 10;

    /// <summary>depth = auto, classifiers: images in the smallest class from which the whole last stage is fine-tuned.</summary>
    [Range(1, 1_000_000)]
    public int AutoLastStagePerClass { get; set; } = 1_000;

    /// <summary>depth = auto, regressors: images in total from which the last residual block is fine-tuned (a regressor has
    /// no classes; ten times the per-class threshold, as for a ten-class set).</summary>
    [Range(1, 10_000_000)]
    public int AutoLastBlockExamples { get; set; } = 100;

    /// <summary>depth = auto, regressors: images in total from which the whole last stage is fine-tuned.</summary>
    [Range(1, 10_000_000)]
    public int AutoLastStageExamples { get; set; } = 10_000;

    /// <summary>How long Predict trusts its list of which heads take which cut points before asking HeadService again.
    /// Training, activating or deleting through this gateway refreshes it at once; so does HeadService saying a head
    /// needs a cut point the request did not carry.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan HeadCatalogTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>PredictStream items processed at once; replies still leave in request order.</summary>
    [Range(1, 256)]
    public int PredictStreamConcurrency { get; set; } = 8;

    /// <summary>Origins allowed to call the HTTP API from a browser page served elsewhere (CORS), e.g.
    /// <c>https://app.example.com</c>. Empty (the default): no CORS headers, so only same-origin pages (the studio) can call it.</summary>
    public string[] CorsOrigins { get; set; } = [];

    /// <summary>Checks that both addresses parse, naming the configuration key that does not.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var (name, value) in new[] { (nameof(BackboneAddress), BackboneAddress), (nameof(HeadsAddress), HeadsAddress) })
        {
            if (!DownstreamAddress.TryParse(value, "check", out _, out var error))
            {
                yield return new ValidationResult($"{Section}:{name}: {error}", [name]);
            }
        }
        foreach (var (stage, stageValue, block, blockValue) in new[]
        {
            (nameof(AutoLastStagePerClass), AutoLastStagePerClass, nameof(AutoLastBlockPerClass), AutoLastBlockPerClass),
            (nameof(AutoLastStageExamples), AutoLastStageExamples, nameof(AutoLastBlockExamples), AutoLastBlockExamples),
        })
        {
            if (stageValue < blockValue)
            {
                yield return new ValidationResult(
                    $"{Section}:{stage} ({stageValue}) must be at least {Section}:{block} ({blockValue}): the last stage is fine-tuned only with more data than the last block.",
                    [stage]);
            }
        }
    }
}
