"""schemathesis hooks for tools/validate-docs.sh: what the document cannot say in JSON Schema.

`GET /api/v1/customers` takes `page` or `after` (a cursor), not both: the second is a 400
by design, and the parameters' description says so, but OpenAPI has no way to declare
two query parameters mutually exclusive. Generated requests with both are not sent.
"""

import schemathesis


@schemathesis.hook("filter_query").apply_to(path="/api/v1/customers", method="GET")
def page_or_cursor(ctx, query):
    return not (query and "page" in query and "after" in query)
