// Swagger UI's start, a file of its own rather than inline: /docs keeps the console's `script-src 'self'`.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  validatorUrl: null, // the validator badge would ask validator.swagger.io, which a gate cannot reach
  // "Try it out" with the console's session cookie: a change on a cookie needs this header (edge/api/auth.py)
  requestInterceptor: (req) => { req.headers["X-Requested-With"] = "swagger-ui"; return req; },
});
