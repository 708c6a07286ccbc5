using System.Diagnostics.CodeAnalysis;
using Grpc.Net.Client.Balancer;

namespace Graft.Gateway.Downstream;

/// <summary>A parsed downstream address: one <c>http(s)://</c> URL, a comma-separated list of them
/// (served by a static resolver), or a resolver target such as <c>dns:///backbone-headless:5110</c>.</summary>
public sealed record DownstreamAddress(Uri Target, bool IsSecure, IReadOnlyList<BalancerAddress>? StaticAddresses)
{
    /// <summary>Scheme of the static resolver that serves address lists.</summary>
    public const string StaticScheme = "static";

    /// <param name="name">Host part of the static target when <paramref name="text"/> is a list (one per downstream).</param>
    public static bool TryParse(string? text, string name, [NotNullWhen(true)] out DownstreamAddress? address, [NotNullWhen(false)] out string? error)
    {
        address = null;
        var parts = (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            error = "an address is required, e.g. http://127.0.0.1:5110 or dns:///backbone-headless:5110";
            return false;
        }

        var uris = new List<Uri>();
        foreach (var part in parts)
        {
            if (!Uri.TryCreate(part, UriKind.Absolute, out var uri))
            {
                error = $"'{part}' is not an absolute URI (e.g. http://127.0.0.1:5110)";
                return false;
            }
            uris.Add(uri);
        }

        if (uris.Count == 1 && uris[0].Scheme is not ("http" or "https"))
        {
            // A resolver target (dns:///host:port); plaintext unless the operator configures TLS downstream.
            address = new DownstreamAddress(uris[0], IsSecure: false, StaticAddresses: null);
            error = null;
            return true;
        }

        if (uris.Any(u => u.Scheme is not ("http" or "https")))
        {
            error = "a comma-separated list may only hold http:// or https:// addresses";
            return false;
        }
        if (uris.Select(u => u.Scheme).Distinct().Count() > 1)
        {
            error = "all addresses in a list must use the same scheme";
            return false;
        }

        var secure = uris[0].Scheme == "https";
        address = uris.Count == 1
            ? new DownstreamAddress(uris[0], secure, null)
            : new DownstreamAddress(new Uri($"{StaticScheme}://{name}"), secure, uris.Select(u => new BalancerAddress(u.Host, u.Port)).ToList());
        error = null;
        return true;
    }
}
