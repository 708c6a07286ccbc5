namespace Graft.Heads;

/// <summary>Why a head operation was refused; the gRPC layer maps each to its status code.</summary>
public enum HeadErrorKind
{
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    Aborted,
    ResourceExhausted,
}

/// <summary>A refusal with a message meant for the caller (it names the head, row or limit involved).</summary>
public sealed class HeadException(HeadErrorKind kind, string message) : Exception(message)
{
    public HeadErrorKind Kind { get; } = kind;

    public static HeadException Invalid(string message) => new(HeadErrorKind.InvalidArgument, message);
}
