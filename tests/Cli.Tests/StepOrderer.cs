using Xunit.Abstractions;
using Xunit.Sdk;

namespace Graft.Cli.Tests;

/// <summary>Orders a class's tests by <see cref="StepAttribute"/>: for a fixture whose last test ends it (SIGTERM).</summary>
public sealed class StepOrderer : ITestCaseOrderer
{
    public const string TypeName = "Graft.Cli.Tests.StepOrderer";

    public const string AssemblyName = "Cli.Tests";

    public IEnumerable<TTestCase> OrderTestCases<TTestCase>(IEnumerable<TTestCase> testCases) where TTestCase : ITestCase
        => testCases.OrderBy(t => t.TestMethod.Method.GetCustomAttributes(typeof(StepAttribute).AssemblyQualifiedName)
            .FirstOrDefault()?.GetNamedArgument<int>(nameof(StepAttribute.Order)) ?? 0);
}

[AttributeUsage(AttributeTargets.Method)]
public sealed class StepAttribute : Attribute
{
    public int Order { get; init; }
}
