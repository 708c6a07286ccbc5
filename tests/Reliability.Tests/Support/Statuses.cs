using System.Text.RegularExpressions;
using Grpc.Core;

namespace Graft.Reliability.Tests.Support;

/// <summary>Assertions on what a client sees when a call fails: the precise code, and a message fit for a person
/// (no stack trace, no exception type names, no server file paths).</summary>
public static partial class Statuses
{
    /// <summary>Runs <paramref name="call"/>, which must fail with <paramref name="expected"/>; returns the exception.</summary>
    public static async Task<RpcException> ExpectAsync(StatusCode expected, Func<Task> call, string because)
    {
        RpcException? failure = null;
        try
        {
            await call();
        }
        catch (RpcException e)
        {
            failure = e;
        }
        Assert.True(failure is not null, $"{because}: expected {expected}, but the call succeeded.");
        Assert.True(failure.StatusCode == expected, $"{because}: expected {expected}, got {failure.StatusCode}: {failure.Status.Detail}");
        AssertReadable(failure, because);
        return failure;
    }

    /// <summary>The status message holds no stack trace or internals and is not empty.</summary>
    public static void AssertReadable(RpcException e, string because)
    {
        var detail = e.Status.Detail ?? "";
        Assert.False(string.IsNullOrWhiteSpace(detail), $"{because}: {e.StatusCode} came with an empty message.");
        Assert.False(Leak().IsMatch(detail), $"{because}: the client-visible message leaks internals: {detail}");
    }

    /// <summary>Stack frames ("   at X.Y(...)"), source lines, exception type names.</summary>
    [GeneratedRegex(@"(^|\n)\s+at \S+\(|\.cs:line \d+|\b\w+(\.\w+)+Exception\b|\bException:|--- End of", RegexOptions.CultureInvariant)]
    public static partial Regex Leak();
}
