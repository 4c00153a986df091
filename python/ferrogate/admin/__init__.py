"""The admin plane: RBAC (:mod:`.rbac`), the route table (:mod:`.routes`), handlers (:mod:`.service`),
dispatch (:mod:`.api`) and the OpenAPI document (:mod:`.openapi`)."""
