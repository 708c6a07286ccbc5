namespace Graft.Backbone;

/// <summary>An input the backbone refuses. The message says what was wrong and what is accepted; the gRPC layer
/// maps it to INVALID_ARGUMENT, or RESOURCE_EXHAUSTED when <see cref="IsSizeLimit"/>.</summary>
public sealed class InputRejectedException(string message, bool isSizeLimit = false) : Exception(message)
{
    /// <summary>True when the input was refused for exceeding a size limit rather than for being malformed.</summary>
    public bool IsSizeLimit { get; } = isSizeLimit;
}
