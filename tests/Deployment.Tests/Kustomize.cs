using System.Collections.Concurrent;
using System.Diagnostics;
using k8s;
using Graft.Testing;
using k8s.Models;

namespace Graft.Deployment.Tests;

/// <summary>Renders a Kustomize directory with <c>kubectl kustomize</c> and parses every object strictly into
/// KubernetesClient's typed models, so an unknown or misspelt field fails instead of being dropped.</summary>
public static class Kustomize
{
    private static readonly ConcurrentDictionary<string, Lazy<RenderedManifests>> Cache = new();

    /// <summary>The rendered overlay k8s/overlays/<paramref name="overlay"/>, rendered once per test run.</summary>
    public static RenderedManifests Overlay(string overlay) =>
        Cache.GetOrAdd(overlay, o => new Lazy<RenderedManifests>(() => Parse(Render(Repo.PathOf($"k8s/overlays/{o}"))))).Value;

    public static string Render(string directory)
    {
        // These tests render k8s/overlays with `kubectl kustomize`; a missing kubectl fails them naming its package.
        var kubectl = RequiredTool.Kubectl.Require();
        var psi = new ProcessStartInfo(kubectl) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("kustomize");
        psi.ArgumentList.Add(directory);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"kubectl kustomize {directory} did not finish within 2 minutes.");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"kubectl kustomize {directory} failed (exit {process.ExitCode}): {stderr.Result}");
        }

        return stdout.Result;
    }

    /// <summary>Strict parse: YAML keys that no model property maps to, and duplicate keys, throw.</summary>
    public static RenderedManifests Parse(string yaml) => new(KubernetesYaml.LoadAllFromString(yaml, strict: true));
}

/// <summary>The typed objects of one rendered overlay, with the look-ups the tests need.</summary>
public sealed class RenderedManifests(IReadOnlyList<object> objects)
{
    public IReadOnlyList<object> Objects { get; } = objects;

    public IEnumerable<T> OfKind<T>() => Objects.OfType<T>();

    public IReadOnlyList<V1Deployment> Deployments => OfKind<V1Deployment>().ToList();

    public V1Deployment Deployment(string component) =>
        Deployments.SingleOrDefault(d => d.Spec.Template.Metadata.Labels.TryGetValue(Labels.Component, out var c) && c == component)
        ?? throw new InvalidOperationException($"No Deployment whose pods carry {Labels.Component}={component}.");

    public V1Service Service(string name) =>
        OfKind<V1Service>().SingleOrDefault(s => s.Metadata.Name == name)
        ?? throw new InvalidOperationException($"No Service named {name}; Services: {string.Join(", ", OfKind<V1Service>().Select(s => s.Metadata.Name))}.");

    public V1ConfigMap ConfigMap(string renderedName) =>
        OfKind<V1ConfigMap>().SingleOrDefault(c => c.Metadata.Name == renderedName)
        ?? throw new InvalidOperationException($"No ConfigMap named {renderedName} (referenced by a pod) in the rendered output.");

    /// <summary>The deployments whose pod template labels satisfy <paramref name="selector"/>.</summary>
    public IReadOnlyList<V1Deployment> DeploymentsSelectedBy(IDictionary<string, string>? matchLabels) =>
        Deployments.Where(d => Labels.Matches(matchLabels, d.Spec.Template.Metadata.Labels)).ToList();

    /// <summary>The effective environment of a container: envFrom ConfigMaps first, then env entries (which win).
    /// Values that come from a Secret are shown as a placeholder; the secrets themselves are never in the repository.</summary>
    public IReadOnlyDictionary<string, string> EffectiveEnvironment(V1Container container)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in container.EnvFrom ?? [])
        {
            Assert.True(source.ConfigMapRef is not null, $"{container.Name}: only ConfigMap envFrom sources are expected.");
            foreach (var (key, value) in ConfigMap(source.ConfigMapRef!.Name).Data ?? new Dictionary<string, string>())
            {
                env[key] = value;
            }
        }

        foreach (var variable in container.Env ?? [])
        {
            env[variable.Name] = variable.ValueFrom?.SecretKeyRef is { } secret
                ? $"<secret {secret.Name}/{secret.Key}>"
                : variable.ValueFrom is null ? variable.Value ?? "" : throw new InvalidOperationException($"{container.Name}: env {variable.Name} has an unexpected valueFrom.");
        }

        return env;
    }
}

/// <summary>The app.kubernetes.io labels the manifests use and how selectors match them.</summary>
public static class Labels
{
    public const string Name = "app.kubernetes.io/name";
    public const string Component = "app.kubernetes.io/component";
    public const string PartOf = "app.kubernetes.io/part-of";
    public const string ManagedBy = "app.kubernetes.io/managed-by";
    public const string Version = "app.kubernetes.io/version";

    /// <summary>A non-empty matchLabels selector matches when every pair is present on the object.</summary>
    public static bool Matches(IDictionary<string, string>? matchLabels, IDictionary<string, string>? labels) =>
        matchLabels is { Count: > 0 } && labels is not null &&
        matchLabels.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
