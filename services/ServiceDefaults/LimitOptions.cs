using System.ComponentModel.DataAnnotations;

namespace Graft.ServiceDefaults;

/// <summary>Request limits shared by every service (configuration section <c>Graft:Limits</c>).</summary>
public sealed class LimitOptions
{
    public const string Section = "Graft:Limits";

    /// <summary>Largest gRPC message accepted or sent, in bytes. Default 16 MiB.</summary>
    [Range(1024, 1L << 30)]
    public int MaxMessageBytes { get; set; } = 16 * 1024 * 1024;
}
