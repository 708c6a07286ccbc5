using Graft.Gateway.Auth;
using Graft.Gateway.Flows;
using Graft.Gateway.Services;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi.Models;

namespace Graft.Gateway.Http;

/// <summary>The gateway's HTTP face, beside gRPC: REST/JSON transcoded from the protos, file-upload predict, training
/// over HTTP, ONNX export downloads, the Open Inference Protocol, the OpenAPI document with its page, and the studio. Served on every
/// endpoint; in practice on the HTTP/1.1 port (5101 by default), since the gRPC port speaks HTTP/2 only.</summary>
public static class HttpApiExtensions
{
    public const string CorsPolicy = "configured-origins";

    /// <summary>JSON transcoding, OpenAPI generation, and CORS when (and only when) origins are configured.</summary>
    public static IServiceCollection AddGatewayHttp(this IServiceCollection services, Grpc.AspNetCore.Server.IGrpcServerBuilder grpc, GatewayOptions options)
    {
        grpc.AddJsonTranscoding();
        services.AddTransient<GatewayService>(); // the HTTP endpoints call its read methods directly
        services.AddEndpointsApiExplorer();
        services.AddGrpcSwagger();
        services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "Graft Gateway",
                Version = "v1",
                Description = "REST/JSON over the Gateway's gRPC API (bytes are base64), file-upload predict, training over HTTP (NDJSON progress) " +
                    "and the Open Inference Protocol. Send 'Authorization: Bearer <token>' as the gRPC API expects.",
            });
            c.AddSecurityDefinition("bearer", new OpenApiSecurityScheme { Type = SecuritySchemeType.Http, Scheme = "bearer" });
            c.AddSecurityRequirement(new OpenApiSecurityRequirement
            {
                [new OpenApiSecurityScheme { Reference = new OpenApiReference { Type = ReferenceType.SecurityScheme, Id = "bearer" } }] = [],
            });
        });
        if (options.CorsOrigins is { Length: > 0 } origins)
        {
            services.AddCors(o => o.AddPolicy(CorsPolicy, p => p.WithOrigins(origins).WithHeaders("authorization", "content-type").AllowAnyMethod()
                // A page elsewhere reads the download's file name and digest too.
                .WithExposedHeaders("content-disposition", ExportEndpoint.Sha256Header)));
        }
        return services;
    }

    /// <summary>Maps the HTTP endpoints, the OpenAPI document (<c>/openapi/v1.json</c>) and its page (<c>/openapi</c>),
    /// and the studio (<c>/studio/</c>; <c>/</c> redirects there).</summary>
    public static WebApplication MapGatewayHttp(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.CorsOrigins is { Length: > 0 })
        {
            app.UseCors(CorsPolicy);
        }

        // The studio: static files shipped beside the assembly, so it works whatever the working folder.
        var studio = new PhysicalFileProvider(Path.Combine(AppContext.BaseDirectory, "wwwroot", "studio"));
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = studio, RequestPath = "/studio" });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = studio,
            RequestPath = "/studio",
            OnPrepareResponse = r =>
            {
                var headers = r.Context.Response.Headers;
                // Nothing outside the gateway may load: the page's own scripts, styles and API only.
                headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; " +
                    "script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
                headers.XContentTypeOptions = "nosniff";
                headers.CacheControl = "no-cache";
            },
        });
        app.MapGet("/", () => Results.Redirect("/studio/")).ExcludeFromDescription();

        app.UseSwagger(o => o.RouteTemplate = "openapi/{documentName}.json");
        app.UseSwaggerUI(o =>
        {
            o.RoutePrefix = "openapi";
            o.SwaggerEndpoint("/openapi/v1.json", "Graft Gateway v1");
            o.DocumentTitle = "Graft Gateway API";
        });

        app.MapPost(UploadPredictEndpoint.Route, UploadPredictEndpoint.HandleAsync)
            .WithTags("Gateway").WithSummary("Predict from an uploaded image: multipart field 'image', or the raw image as the body; ?heads=a,b&top_k=3")
            .Accepts<IFormFile>("multipart/form-data", "image/png", "image/jpeg", "application/octet-stream").DisableAntiforgery();
        app.MapPost(TrainEndpoint.Route, TrainEndpoint.HandleAsync)
            .WithTags("Gateway").WithSummary("Train a head from a multipart upload (fields class:<label> or value:<number>, optional spec JSON and kind); progress as NDJSON")
            .Accepts<IFormFile>("multipart/form-data").DisableAntiforgery();
        app.MapGet(ExportEndpoint.Route, ExportEndpoint.HandleAsync)
            .WithTags("Gateway").WithSummary("Export a head version as one ONNX file (backbone + head): ?version=N (default: the serving one)&input=pixels|tensor; the file as application/octet-stream")
            .Produces(StatusCodes.Status200OK, contentType: "application/octet-stream");
        app.MapOpenInference();
        return app;
    }
}
