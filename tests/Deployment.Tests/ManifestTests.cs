using k8s;
using k8s.Models;

namespace Graft.Deployment.Tests;

/// <summary>Invariants of every rendered overlay (k8s/overlays/cpu and k8s/overlays/gpu).</summary>
public sealed class ManifestTests
{
    public static TheoryData<string> Overlays => new() { "cpu", "gpu" };

    private static readonly string[] Components = ["backbone", "heads", "gateway"];

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Overlay_renders_into_typed_objects_with_one_deployment_per_service(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);

        Assert.All(rendered.Objects, o => Assert.IsAssignableFrom<IKubernetesObject<V1ObjectMeta>>(o));
        Assert.Equal(Components.Order(), rendered.Deployments.Select(d => d.Spec.Template.Metadata.Labels[Labels.Component]).Order());
        Assert.Empty(rendered.OfKind<V1Secret>()); // Secrets are created at deploy time, never committed.
    }

    [Fact]
    public void Strict_parsing_rejects_a_misspelt_field()
    {
        const string yaml = """
            apiVersion: v1
            kind: Service
            metadata:
              name: typo
            spec:
              clusterIp: None
            """;

        // YamlDotNet's own error for a key no model property maps to, naming the key.
        var e = Assert.ThrowsAny<YamlDotNet.Core.YamlException>(() => Kustomize.Parse(yaml));
        Assert.Contains("clusterIp", e.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_container_has_grpc_readiness_and_liveness_probes_on_its_grpc_port(string overlay)
    {
        foreach (var deployment in Kustomize.Overlay(overlay).Deployments)
        {
            foreach (var container in deployment.Spec.Template.Spec.Containers)
            {
                var grpcPort = container.Ports.Single(p => p.Name == "grpc").ContainerPort;
                var where = $"{overlay}/{deployment.Metadata.Name}/{container.Name}";

                Assert.True(container.ReadinessProbe?.Grpc is not null, $"{where}: readiness must be a grpc probe.");
                Assert.Equal(grpcPort, container.ReadinessProbe!.Grpc.Port);
                Assert.True(string.IsNullOrEmpty(container.ReadinessProbe.Grpc.Service), $"{where}: readiness probes service \"\" (ready = model loaded and warm).");
                Assert.True(container.LivenessProbe?.Grpc is not null, $"{where}: liveness must be a grpc probe.");
                Assert.Equal(grpcPort, container.LivenessProbe!.Grpc.Port);
                Assert.Equal("liveness", container.LivenessProbe.Grpc.Service);
                if (container.StartupProbe is not null)
                {
                    Assert.Equal(grpcPort, container.StartupProbe.Grpc?.Port);
                }
            }
        }

        var backbone = Kustomize.Overlay(overlay).Deployment("backbone").Spec.Template.Spec.Containers.Single();
        Assert.True(backbone.StartupProbe?.Grpc is not null, "The backbone needs a startup probe covering its model load.");
        Assert.True(backbone.StartupProbe!.PeriodSeconds * backbone.StartupProbe.FailureThreshold >= 120,
            "The backbone's startup probe must allow at least two minutes for loading a large model.");
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_container_requests_and_limits_cpu_and_memory_with_requests_within_limits(string overlay)
    {
        foreach (var deployment in Kustomize.Overlay(overlay).Deployments)
        {
            foreach (var container in deployment.Spec.Template.Spec.Containers)
            {
                var resources = container.Resources;
                foreach (var name in new[] { "cpu", "memory" })
                {
                    Assert.True(resources?.Requests?.ContainsKey(name) == true, $"{overlay}/{container.Name}: no {name} request.");
                    Assert.True(resources!.Limits?.ContainsKey(name) == true, $"{overlay}/{container.Name}: no {name} limit.");
                    Assert.True(resources.Requests![name].ToDecimal() <= resources.Limits![name].ToDecimal(),
                        $"{overlay}/{container.Name}: {name} request {resources.Requests[name]} exceeds its limit {resources.Limits[name]}.");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_container_runs_non_root_read_only_without_capabilities_under_runtime_default_seccomp(string overlay)
    {
        foreach (var deployment in Kustomize.Overlay(overlay).Deployments)
        {
            var pod = deployment.Spec.Template.Spec;
            Assert.False(pod.AutomountServiceAccountToken ?? true, $"{deployment.Metadata.Name}: the services never call the Kubernetes API.");
            foreach (var container in pod.Containers)
            {
                var c = container.SecurityContext;
                var where = $"{overlay}/{deployment.Metadata.Name}/{container.Name}";
                Assert.True(c?.RunAsNonRoot ?? pod.SecurityContext?.RunAsNonRoot ?? false, $"{where}: runAsNonRoot");
                Assert.NotEqual(0, c?.RunAsUser ?? pod.SecurityContext?.RunAsUser);
                Assert.True(c?.ReadOnlyRootFilesystem ?? false, $"{where}: readOnlyRootFilesystem");
                Assert.False(c?.AllowPrivilegeEscalation ?? true, $"{where}: allowPrivilegeEscalation must be false");
                Assert.Contains("ALL", c?.Capabilities?.Drop ?? []);
                Assert.Empty(c?.Capabilities?.Add ?? []);
                Assert.Equal("RuntimeDefault", (c?.SeccompProfile ?? pod.SecurityContext?.SeccompProfile)?.Type);

                // A read-only root still needs a writable /tmp (.NET's diagnostics and temp files): an emptyDir.
                var tmp = container.VolumeMounts?.SingleOrDefault(m => m.MountPath == "/tmp");
                Assert.True(tmp is not null, $"{where}: /tmp must be mounted.");
                Assert.NotNull(pod.Volumes.Single(v => v.Name == tmp!.Name).EmptyDir);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Only_the_gpu_overlay_gives_the_backbone_a_gpu_node_and_no_other_pod_asks_for_one(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        foreach (var deployment in rendered.Deployments)
        {
            var pod = deployment.Spec.Template.Spec;
            var wantsGpu = overlay == "gpu" && deployment.Spec.Template.Metadata.Labels[Labels.Component] == "backbone";
            foreach (var container in pod.Containers)
            {
                var limit = Quantity(container.Resources?.Limits, "nvidia.com/gpu");
                var request = Quantity(container.Resources?.Requests, "nvidia.com/gpu");
                if (wantsGpu)
                {
                    Assert.Equal(1m, limit?.ToDecimal());
                    Assert.True(request is null || request.ToDecimal() == 1m, "A GPU request must equal its limit.");
                }
                else
                {
                    Assert.True(limit is null && request is null, $"{overlay}/{deployment.Metadata.Name} must not ask for a GPU.");
                }
            }

            Assert.Equal(wantsGpu, pod.NodeSelector?.Keys.Any(k => k.StartsWith("nvidia.com/", StringComparison.Ordinal)) ?? false);
            Assert.Equal(wantsGpu, pod.Tolerations?.Any(t => t.Key == "nvidia.com/gpu") ?? false);
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_image_has_an_explicit_tag_and_the_gpu_backbone_runs_the_cuda_variant(string overlay)
    {
        foreach (var deployment in Kustomize.Overlay(overlay).Deployments)
        {
            var image = deployment.Spec.Template.Spec.Containers.Single().Image;
            var tag = image[(image.LastIndexOf('/') + 1)..].Split(':') is [_, var t] ? t : null;
            Assert.False(tag is null or "latest", $"{overlay}/{deployment.Metadata.Name}: image {image} needs an explicit tag.");
            var gpuBackbone = overlay == "gpu" && deployment.Spec.Template.Metadata.Labels[Labels.Component] == "backbone";
            Assert.Equal(gpuBackbone, tag!.EndsWith("-gpu", StringComparison.Ordinal)); // the Dockerfile's "gpu" target
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Backbone_and_heads_sit_behind_headless_services_that_select_their_pods_and_name_real_ports(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        foreach (var service in rendered.OfKind<V1Service>())
        {
            var selected = rendered.DeploymentsSelectedBy(service.Spec.Selector);
            var deployment = Assert.Single(selected);
            var container = deployment.Spec.Template.Spec.Containers.Single();
            foreach (var port in service.Spec.Ports)
            {
                var target = port.TargetPort?.Value ?? port.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
                Assert.Contains(container.Ports, p => p.Name == target || p.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture) == target);
            }

            var component = deployment.Spec.Template.Metadata.Labels[Labels.Component];
            Assert.Equal(component is "backbone" or "heads", service.Spec.ClusterIP == "None");
        }

        Assert.Equal("None", rendered.Service("graft-backbone").Spec.ClusterIP);
        Assert.Equal("None", rendered.Service("graft-heads").Spec.ClusterIP);
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Gateway_reaches_backbone_and_heads_through_dns_on_their_headless_services_grpc_ports(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var gateway = rendered.Deployment("gateway").Spec.Template.Spec.Containers.Single();
        var env = rendered.EffectiveEnvironment(gateway);

        foreach (var (key, component) in new[] { ("Graft__Gateway__BackboneAddress", "backbone"), ("Graft__Gateway__HeadsAddress", "heads") })
        {
            Assert.True(env.TryGetValue(key, out var address), $"{overlay}: the gateway has no {key}.");
            Assert.StartsWith("dns:///", address);
            var (host, port) = SplitHostPort(address!["dns:///".Length..]);
            var service = rendered.Service(host);
            Assert.Equal("None", service.Spec.ClusterIP);
            Assert.Contains(service.Spec.Ports, p => p.Port == port && p.Name == "grpc");
            var target = Assert.Single(rendered.DeploymentsSelectedBy(service.Spec.Selector));
            Assert.Equal(component, target.Spec.Template.Metadata.Labels[Labels.Component]);
            Assert.Equal(Repo.ByComponent(component).DefaultPort("Grpc"), port);
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Network_policies_select_real_pods_and_let_only_the_gateway_reach_backbone_and_heads_grpc(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var policies = rendered.OfKind<V1NetworkPolicy>().ToList();
        var gatewayLabels = rendered.Deployment("gateway").Spec.Template.Metadata.Labels;

        foreach (var policy in policies)
        {
            Assert.NotEmpty(rendered.DeploymentsSelectedBy(policy.Spec.PodSelector.MatchLabels));
            foreach (var peer in policy.Spec.Ingress.SelectMany(r => r.FromProperty ?? []).Where(p => p.PodSelector is not null))
            {
                Assert.NotEmpty(rendered.DeploymentsSelectedBy(peer.PodSelector.MatchLabels));
            }
        }

        foreach (var component in new[] { "backbone", "heads" })
        {
            var deployment = rendered.Deployment(component);
            var grpcPort = deployment.Spec.Template.Spec.Containers.Single().Ports.Single(p => p.Name == "grpc").ContainerPort;
            var governing = policies.Where(p => Labels.Matches(p.Spec.PodSelector.MatchLabels, deployment.Spec.Template.Metadata.Labels)).ToList();
            Assert.NotEmpty(governing);
            Assert.All(governing, p => Assert.Contains("Ingress", p.Spec.PolicyTypes));

            var rulesReachingGrpc = governing.SelectMany(p => p.Spec.Ingress)
                .Where(r => r.Ports is null || r.Ports.Any(port => port.Port?.Value == grpcPort.ToString(System.Globalization.CultureInfo.InvariantCulture) || port.Port?.Value == "grpc"))
                .ToList();
            Assert.NotEmpty(rulesReachingGrpc);
            Assert.All(rulesReachingGrpc, rule =>
            {
                Assert.NotNull(rule.FromProperty);
                Assert.All(rule.FromProperty, peer =>
                {
                    Assert.True(peer.IpBlock is null && peer.NamespaceSelector is null, $"{component}: gRPC must be open to the gateway's pods only.");
                    Assert.True(Labels.Matches(peer.PodSelector?.MatchLabels, gatewayLabels), $"{component}: a gRPC peer that is not the gateway.");
                    Assert.Equal(["gateway"], rendered.DeploymentsSelectedBy(peer.PodSelector!.MatchLabels).Select(d => d.Spec.Template.Metadata.Labels[Labels.Component]));
                });
            });
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Ports_in_the_manifests_are_the_ports_the_services_listen_on_by_default(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        foreach (var service in Repo.Services)
        {
            var deployment = rendered.Deployment(service.Component);
            var container = deployment.Spec.Template.Spec.Containers.Single();
            var env = rendered.EffectiveEnvironment(container);
            foreach (var (endpoint, portName) in new[] { ("Grpc", "grpc"), ("Http", "http") })
            {
                var expected = service.DefaultPort(endpoint);
                Assert.Equal(expected, container.Ports.Single(p => p.Name == portName).ContainerPort);

                // In a container Kestrel binds every interface, on the same port as on a developer machine.
                var url = new Uri(env[$"Kestrel__Endpoints__{endpoint}__Url"]);
                Assert.Equal("0.0.0.0", url.Host);
                Assert.Equal(expected, url.Port);
            }

            var svc = rendered.OfKind<V1Service>().Single(s => rendered.DeploymentsSelectedBy(s.Spec.Selector).Contains(deployment));
            Assert.Equal(service.DefaultPort("Grpc"), svc.Spec.Ports.Single(p => p.Name == "grpc").Port);
            Assert.Equal(service.DefaultPort("Http").ToString(System.Globalization.CultureInfo.InvariantCulture),
                deployment.Spec.Template.Metadata.Annotations?["prometheus.io/port"]);
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_environment_and_configmap_key_names_a_settable_option_of_the_services(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var problems = new List<string>();

        foreach (var configMap in rendered.OfKind<V1ConfigMap>())
        {
            problems.AddRange((configMap.Data ?? new Dictionary<string, string>()).Keys.Select(KeyProblem).OfType<string>()
                .Select(p => $"ConfigMap {configMap.Metadata.Name}: {p}"));
        }

        foreach (var deployment in rendered.Deployments)
        {
            var container = deployment.Spec.Template.Spec.Containers.Single();
            var service = Repo.ByComponent(deployment.Spec.Template.Metadata.Labels[Labels.Component]);
            foreach (var name in (container.Env ?? []).Select(e => e.Name))
            {
                var problem = name.StartsWith("Kestrel__Endpoints__", StringComparison.Ordinal)
                    ? KestrelProblem(name, service)
                    : KeyProblem(name);
                if (problem is not null)
                {
                    problems.Add($"{deployment.Metadata.Name} env: {problem}");
                }
            }
        }

        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void The_configuration_each_service_receives_passes_its_own_options_validation(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);

        var failures = rendered.Deployments.SelectMany(d =>
            OptionsCatalog.ValidationFailures(rendered.EffectiveEnvironment(d.Spec.Template.Spec.Containers.Single()))
                .Select(f => $"{overlay}/{d.Metadata.Name}: {f}")).ToList();

        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Head_registry_is_one_shared_volume_mounted_at_the_registry_path_of_every_head_replica(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var heads = rendered.Deployment("heads").Spec.Template.Spec;
        var registryPath = rendered.EffectiveEnvironment(heads.Containers.Single())["Graft__Heads__RegistryPath"];

        var mount = heads.Containers.Single().VolumeMounts.Single(m => m.MountPath == registryPath);
        Assert.False(mount.ReadOnlyProperty ?? false);
        var claimName = heads.Volumes.Single(v => v.Name == mount.Name).PersistentVolumeClaim?.ClaimName;
        var claim = rendered.OfKind<V1PersistentVolumeClaim>().Single(c => c.Metadata.Name == claimName);
        // Laptop clusters (one node, local-path storage) only offer ReadWriteOnce, which all pods on that node share.
        Assert.Equal(overlay == "cpu" ? "ReadWriteOnce" : "ReadWriteMany", Assert.Single(claim.Spec.AccessModes));
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Gateway_keeps_training_sets_on_the_head_registry_volume_in_a_folder_head_service_ignores(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var gateway = rendered.Deployment("gateway").Spec.Template.Spec;
        var heads = rendered.Deployment("heads").Spec.Template.Spec;
        var datasets = rendered.EffectiveEnvironment(gateway.Containers.Single())["Graft__Gateway__Datasets__Path"];

        var mount = gateway.Containers.Single().VolumeMounts.Single(m => datasets.StartsWith(m.MountPath.TrimEnd('/') + "/", StringComparison.Ordinal));
        Assert.False(mount.ReadOnlyProperty ?? false);
        var headsMount = heads.Containers.Single().VolumeMounts.Single(m => m.Name == "registry");
        Assert.Equal(
            heads.Volumes.Single(v => v.Name == headsMount.Name).PersistentVolumeClaim?.ClaimName,
            gateway.Volumes.Single(v => v.Name == mount.Name).PersistentVolumeClaim?.ClaimName);
        // Inside the registry root, the store's folder must not look like a head to HeadService's scanner.
        var folder = datasets[(mount.MountPath.TrimEnd('/').Length + 1)..].Split('/')[0];
        Assert.StartsWith(".", folder);
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Backbone_model_path_lies_on_its_read_only_models_volume(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var backbone = rendered.Deployment("backbone").Spec.Template.Spec;
        var container = backbone.Containers.Single();
        var env = rendered.EffectiveEnvironment(container);

        var models = container.VolumeMounts.Single(m => m.Name == "models");
        Assert.True(models.ReadOnlyProperty, "The backbone never writes its model files.");
        Assert.NotNull(rendered.OfKind<V1PersistentVolumeClaim>().SingleOrDefault(c =>
            c.Metadata.Name == backbone.Volumes.Single(v => v.Name == "models").PersistentVolumeClaim?.ClaimName));
        if (overlay == "gpu")
        {
            Assert.Equal("vgg16", env["Graft__Backbone__Profile"]);
            Assert.StartsWith(models.MountPath.TrimEnd('/') + "/", env["Graft__Backbone__ModelPath"]);
            Assert.True(int.Parse(env["Graft__Backbone__MaxBatchSize"], System.Globalization.CultureInfo.InvariantCulture) >= 32,
                "A GPU backbone wants large batches.");
        }
        else
        {
            Assert.Equal("resnet18", env["Graft__Backbone__Profile"]);
            Assert.False(env.ContainsKey("Graft__Backbone__ModelPath"), "The cpu overlay runs the embedded ResNet18.");
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Disruption_budgets_and_autoscalers_target_existing_deployments(string overlay)
    {
        var rendered = Kustomize.Overlay(overlay);
        var budgets = rendered.OfKind<V1PodDisruptionBudget>().ToList();
        foreach (var budget in budgets)
        {
            Assert.Single(rendered.DeploymentsSelectedBy(budget.Spec.Selector.MatchLabels));
        }

        Assert.All(rendered.Deployments, d => Assert.Contains(budgets, b => Labels.Matches(b.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)));

        var autoscalers = rendered.OfKind<V2HorizontalPodAutoscaler>().ToList();
        Assert.Equal(["gateway", "heads"], autoscalers.Select(h =>
        {
            Assert.Equal("Deployment", h.Spec.ScaleTargetRef.Kind);
            var target = rendered.Deployments.Single(d => d.Metadata.Name == h.Spec.ScaleTargetRef.Name);
            Assert.InRange(h.Spec.MinReplicas ?? 1, 1, h.Spec.MaxReplicas);
            // A CPU-utilisation target is a percentage of the request: the target must request CPU.
            Assert.True(target.Spec.Template.Spec.Containers.All(c => c.Resources.Requests.ContainsKey("cpu")));
            Assert.Null(target.Spec.Replicas); // The autoscaler owns the count; a fixed one would reset it on apply.
            return target.Spec.Template.Metadata.Labels[Labels.Component];
        }).Order());
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Replicas_spread_over_nodes_with_selectors_that_match_their_own_pods(string overlay)
    {
        foreach (var deployment in Kustomize.Overlay(overlay).Deployments)
        {
            var constraints = deployment.Spec.Template.Spec.TopologySpreadConstraints;
            Assert.Contains(constraints, c => c.TopologyKey == "kubernetes.io/hostname");
            Assert.All(constraints, c => Assert.True(
                Labels.Matches(c.LabelSelector.MatchLabels, deployment.Spec.Template.Metadata.Labels) &&
                Labels.Matches(c.LabelSelector.MatchLabels, deployment.Spec.Selector.MatchLabels),
                $"{deployment.Metadata.Name}: a spread constraint that does not count its own pods."));
            Assert.True(Labels.Matches(deployment.Spec.Selector.MatchLabels, deployment.Spec.Template.Metadata.Labels));
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_object_carries_the_app_kubernetes_io_labels(string overlay)
    {
        foreach (var obj in Kustomize.Overlay(overlay).Objects.Cast<IKubernetesObject<V1ObjectMeta>>())
        {
            IReadOnlyDictionary<string, string> labels = new Dictionary<string, string>(obj.Metadata.Labels ?? new Dictionary<string, string>());
            var what = $"{obj.Kind}/{obj.Metadata.Name}";
            Assert.True(labels.GetValueOrDefault(Labels.PartOf) == "graft", $"{what}: {Labels.PartOf}=graft");
            Assert.True(labels.ContainsKey(Labels.ManagedBy), $"{what}: {Labels.ManagedBy}");
            if (obj is V1Namespace)
            {
                continue;
            }

            Assert.True(labels.GetValueOrDefault(Labels.Name) == "graft", $"{what}: {Labels.Name}=graft");
            if (obj is V1Deployment deployment)
            {
                var pod = deployment.Spec.Template.Metadata.Labels;
                Assert.Contains(pod[Labels.Component], Components);
                Assert.Equal(labels[Labels.Version], pod[Labels.Version]);
                Assert.DoesNotContain(Labels.Version, deployment.Spec.Selector.MatchLabels.Keys); // selectors are immutable
            }
        }
    }

    private static ResourceQuantity? Quantity(IDictionary<string, ResourceQuantity>? resources, string name) =>
        resources is not null && resources.TryGetValue(name, out var quantity) ? quantity : null;

    private static string? KeyProblem(string key) =>
        key.StartsWith("Graft__", StringComparison.Ordinal)
            ? OptionsCatalog.ProblemWith(key)
            : $"{key}: only Graft__<Section>__<Option> settings (and Kestrel endpoint URLs in env) are expected.";

    private static string? KestrelProblem(string key, ServiceInfo service)
    {
        var parts = key.Split("__");
        return parts is [_, _, var endpoint, "Url"] && service.DefaultEndpoints().ContainsKey(endpoint)
            ? null
            : $"{key}: not the Url of a Kestrel endpoint in services/{service.Folder}/appsettings.json ({string.Join(", ", service.DefaultEndpoints().Keys)}).";
    }

    private static (string Host, int Port) SplitHostPort(string authority)
    {
        var colon = authority.LastIndexOf(':');
        return (authority[..colon], int.Parse(authority[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }
}
