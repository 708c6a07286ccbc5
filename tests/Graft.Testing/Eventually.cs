namespace Graft.Testing;

/// <summary>Waits on an observable condition instead of a fixed sleep: checks it often, and fails with what was
/// awaited once a generous timeout has passed (the machine may be loaded; the condition, not the clock, decides).</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<bool> condition, TimeSpan timeout, string awaited)
    {
        using var limit = new CancellationTokenSource(timeout);
        while (!condition())
        {
            try
            {
                await Task.Delay(50, limit.Token);
            }
            catch (OperationCanceledException)
            {
                if (condition()) return;
                throw new TimeoutException($"Waited {timeout.TotalSeconds:0} s for {awaited}; it did not happen.");
            }
        }
    }
}
