namespace Graft.Launcher;

/// <summary>A service exited while starting or did not report SERVING in time; the message ends with its last output lines.</summary>
public sealed class ServiceStartException(GraftService service, string message) : Exception(message)
{
    public GraftService Service { get; } = service;
}
