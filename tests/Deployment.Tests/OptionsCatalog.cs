using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Reflection;
using Graft.ServiceDefaults;
using Microsoft.Extensions.Configuration;

namespace Graft.Deployment.Tests;

/// <summary>The services' options classes, found by reflection in the built service assemblies: every public class
/// with a <c>public const string Section = "Graft:…"</c>. Follows the services as their options evolve.</summary>
public static class OptionsCatalog
{
    private static readonly string[] ServiceAssemblies = ["Graft.BackboneService", "Graft.HeadService", "Graft.Gateway"];

    /// <summary>Configuration section ("Graft:Backbone") → options type.</summary>
    public static IReadOnlyDictionary<string, Type> Sections { get; } = Discover();

    private static Dictionary<string, Type> Discover()
    {
        var assemblies = ServiceAssemblies.Select(n => Assembly.Load(new AssemblyName(n))).Append(typeof(LimitOptions).Assembly);
        var sections = new Dictionary<string, Type>(StringComparer.OrdinalIgnoreCase);
        foreach (var type in assemblies.SelectMany(LoadableTypes).Where(t => t is { IsClass: true, IsPublic: true }))
        {
            var field = type.GetField("Section", BindingFlags.Public | BindingFlags.Static);
            if (field is { IsLiteral: true } && field.FieldType == typeof(string) && field.GetRawConstantValue() is string section &&
                section.StartsWith("Graft:", StringComparison.Ordinal))
            {
                Assert.False(sections.ContainsKey(section), $"Two options classes declare Section \"{section}\": {sections.GetValueOrDefault(section)} and {type}.");
                sections[section] = type;
            }
        }

        return sections;
    }

    private static IEnumerable<Type> LoadableTypes(Assembly assembly)
    {
        try
        {
            return assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException e)
        {
            return e.Types.OfType<Type>();
        }
    }

    /// <summary>Why an environment-form key (<c>Graft__Backbone__MaxBatchSize</c>) names no settable option, or null when it does.</summary>
    public static string? ProblemWith(string environmentKey)
    {
        var segments = environmentKey.Split("__");
        for (var take = segments.Length - 1; take >= 2; take--)
        {
            var section = string.Join(':', segments[..take]);
            if (Sections.TryGetValue(section, out var type))
            {
                return ProblemWithPath(type, segments[take..], environmentKey);
            }
        }

        return $"{environmentKey}: no options class declares a Section matching any prefix of it; sections found: {string.Join(", ", Sections.Keys.Order())}.";
    }

    private static string? ProblemWithPath(Type type, string[] path, string key)
    {
        for (var i = 0; i < path.Length; i++)
        {
            // The configuration binder matches property names case-insensitively.
            var property = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .FirstOrDefault(p => string.Equals(p.Name, path[i], StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                return $"{key}: {type.FullName} has no public property '{path[i]}'; it has: {string.Join(", ", type.GetProperties().Select(p => p.Name).Order())}.";
            }

            var last = i == path.Length - 1;
            if (last && property.SetMethod is not { IsPublic: true })
            {
                return $"{key}: {type.FullName}.{property.Name} has no public setter, so configuration cannot set it.";
            }

            if (!last)
            {
                type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                if (typeof(IEnumerable).IsAssignableFrom(type) && type != typeof(string))
                {
                    return null; // An index or dictionary key follows; the binder accepts any.
                }
            }
        }

        return null;
    }

    /// <summary>Binds every options class named by <paramref name="environment"/> the way the service does at start-up
    /// (environment-form keys, the configuration binder) and runs its validation; returns the failures.</summary>
    public static IReadOnlyList<string> ValidationFailures(IReadOnlyDictionary<string, string> environment)
    {
        var failures = new List<string>();
        foreach (var (section, type) in Sections)
        {
            // A nested section with an options class of its own (Graft:Gateway:Datasets in Graft:Gateway) is checked by that class.
            var nested = Sections.Keys.Where(k => k.StartsWith(section + ":", StringComparison.OrdinalIgnoreCase)).ToList();
            var configuration = new ConfigurationBuilder()
                .AddInMemoryCollection(environment
                    .Select(kv => new KeyValuePair<string, string?>(kv.Key.Replace("__", ":"), kv.Value))
                    .Where(kv => !nested.Any(n => kv.Key.StartsWith(n + ":", StringComparison.OrdinalIgnoreCase))))
                .Build();
            if (!configuration.GetSection(section).Exists())
            {
                continue;
            }

            object options;
            try
            {
                options = configuration.GetSection(section).Get(type, o => o.ErrorOnUnknownConfiguration = true) ?? Activator.CreateInstance(type)!;
            }
            catch (InvalidOperationException e)
            {
                failures.Add($"{section}: {e.Message}");
                continue;
            }

            var results = new List<ValidationResult>();
            if (!Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true))
            {
                failures.AddRange(results.Select(r => $"{section}: {r.ErrorMessage} ({string.Join(", ", r.MemberNames)})"));
            }
        }

        return failures;
    }
}
