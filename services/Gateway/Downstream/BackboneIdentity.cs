namespace Graft.Gateway.Downstream;

/// <summary>The fingerprint of the backbone last seen in a reply, so listing heads can mark stale ones
/// without an extra backbone call.</summary>
public sealed class BackboneIdentity
{
    private volatile string? _fingerprint;

    public string? Fingerprint => _fingerprint;

    public void Observe(string fingerprint)
    {
        if (!string.IsNullOrEmpty(fingerprint))
        {
            _fingerprint = fingerprint;
        }
    }
}
