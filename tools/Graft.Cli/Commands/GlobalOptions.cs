using System.CommandLine;
using Graft.Cli.Client;

namespace Graft.Cli.Commands;

/// <summary>Options every verb understands: where the Gateway is and which token to send.</summary>
public static class GlobalOptions
{
    public const string DefaultGateway = "http://127.0.0.1:5100";

    public static readonly Option<string> Gateway = new("--gateway", "-g")
    {
        Description = "Gateway gRPC address (env GRAFT_GATEWAY; default " + DefaultGateway + ").",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("GRAFT_GATEWAY") is { Length: > 0 } env ? env : DefaultGateway,
    };

    public static readonly Option<string?> Token = new("--token")
    {
        Description = "Bearer token for the Gateway (env GRAFT_ADMIN_TOKEN; else the file `graft up` writes: data/admin-token, or env GRAFT_TOKEN_FILE).",
        Recursive = true,
    };

    /// <summary>The Gateway address as a URI; "host:port" gets "http://".</summary>
    public static Uri GatewayAddress(ParseResult parse)
    {
        var raw = parse.GetValue(Gateway)!.Trim();
        if (!raw.Contains("://", StringComparison.Ordinal)) raw = "http://" + raw;
        return Uri.TryCreate(raw, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? uri
            : throw new CliException($"--gateway \"{raw}\" is not an http(s) address; use e.g. {DefaultGateway}.", ExitCodes.Usage);
    }

    /// <summary>The token: --token, then GRAFT_ADMIN_TOKEN, then the local stack's token file, else none.</summary>
    public static string? ResolveToken(ParseResult parse)
    {
        if (parse.GetValue(Token) is { Length: > 0 } token) return token;
        if (Environment.GetEnvironmentVariable("GRAFT_ADMIN_TOKEN") is { Length: > 0 } env) return env;
        var file = Environment.GetEnvironmentVariable("GRAFT_TOKEN_FILE") is { Length: > 0 } f ? f : Path.Combine("data", "admin-token");
        return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
    }

    public static GatewaySession Connect(ParseResult parse) => new(GatewayAddress(parse), ResolveToken(parse));
}
