// Starts Swagger UI on this gateway's own OpenAPI document. Nothing is loaded from elsewhere:
// the validator badge, which would send the document to an outside service, is off, and
// "Try it out" calls the document's relative server URL, i.e. this same gateway.
"use strict";

(function () {
  // A successful sign-in or refresh tried from this page authorizes the page's later calls
  // with the access token it returned, as a client would.
  const TOKEN_PATHS = ["/api/v1/auth/login", "/api/v1/auth/refresh"];

  const ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    displayRequestDuration: true,
    filter: true,
    responseInterceptor: function (response) {
      const path = new URL(response.url, window.location.href).pathname;
      const token = response.ok && response.body && response.body.access_token;
      if (TOKEN_PATHS.includes(path) && typeof token === "string") {
        ui.preauthorizeApiKey("bearer", token);
      }
      return response;
    },
  });
  window.ui = ui;
})();
