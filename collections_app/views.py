"""REST endpoints for collections, records and tokens. Thin: parse, call a service, serialise."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, QueryDict
from django.template import loader
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import formatting
from rest_framework.utils.serializer_helpers import ReturnDict
from rest_framework.views import APIView

from collections_app import browsable, filters, openapi, services
from collections_app.models import RULE_NAMES, Collection, Record
from collections_app.prepared import PreparedLookup
from collections_app.rules import is_staff, rule_condition
from collections_app.serializers import (
    CollectionSerializer,
    RecordSerializer,
    TokenRequestSerializer,
    record_representation,
    user_summary,
)
from collections_app.throttling import login_throttles

# Every record request reads its collection: compiled once.
collection_by_name = PreparedLookup(lambda name: Collection.objects.filter(name=name))


class CollectionViewSet(viewsets.GenericViewSet):
    """Collections: a schema (typed fields) and access rules. Staff only."""

    queryset = Collection.objects.all()
    serializer_class = CollectionSerializer
    permission_classes = [permissions.IsAdminUser]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_view_name(self) -> str:
        name = (getattr(self, "kwargs", None) or {}).get("name")
        return browsable.page_title("collection-detail" if name else "collection-list", {"name": name}) or ""

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([c.as_dict() for c in page])

    def retrieve(self, request: Request, name: str) -> Response:
        return Response(self.get_object().as_dict())

    def create(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        collection = services.collection_create(**serializer.validated_data)
        return Response(collection.as_dict(), status=status.HTTP_201_CREATED)

    def update(self, request: Request, name: str) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # PUT replaces the whole definition: rules left out become null, fields left out empty.
        changes = {"fields": [], **dict.fromkeys(RULE_NAMES), **serializer.validated_data}
        collection = services.collection_update(collection=self.get_object(), changes=changes)
        return Response(collection.as_dict())

    def partial_update(self, request: Request, name: str) -> Response:
        serializer = self.get_serializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        collection = services.collection_update(collection=self.get_object(), changes=serializer.validated_data)
        return Response(collection.as_dict())

    def destroy(self, request: Request, name: str) -> Response:
        services.collection_delete(collection=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecordFilterBackend(DjangoFilterBackend):
    """`?query=`, the schema's django-filter parameters and `?ordering=` on a record list."""

    def get_filterset_class(self, view: Any, queryset: Any = None) -> Any:
        if getattr(view, "swagger_fake_view", False):
            return None
        if not hasattr(view, "filterset_for_request"):
            view.filterset_for_request = filters.build_filterset(
                view.collection, show_hidden=is_staff(view.request.user)
            )
        return view.filterset_for_request

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        collection = view.collection
        show_hidden = is_staff(request.user)
        if not show_hidden and (hidden := filters.hidden_parameters(collection, request.query_params)):
            raise ValidationError({name: ["Filtering on this field is not allowed."] for name in hidden})
        filters.check_filter_count(self.get_filterset_class(view, queryset), request.query_params)
        text = request.query_params.get("query", "")
        condition = filters.query_condition(collection, text, user=request.user, show_hidden=show_hidden)
        queryset = filters.filter_records(queryset, condition)
        queryset = super().filter_queryset(request, queryset, view)
        ordering = request.query_params.get("ordering", "created")
        return queryset.order_by(*filters.ordering_expressions(collection, ordering, show_hidden=show_hidden))

    def to_html(self, request: Request, queryset: QuerySet, view: Any) -> str | None:
        """The browsable API's filter form, with every filter of the schema."""
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None:
            return None
        filterset = filterset_class(data=request.query_params, queryset=queryset, request=request, full=True)
        return loader.get_template(self.template).render({"filter": filterset}, request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return []


COLLECTION_PARAMETER = OpenApiParameter("collection_name", OpenApiTypes.STR, OpenApiParameter.PATH)
LIST_PARAMETERS = [
    OpenApiParameter("query", OpenApiTypes.STR, description='Filter, e.g. `status = "published" && price > 100`.'),
    OpenApiParameter("ordering", OpenApiTypes.STR, description="Comma-separated fields, `-` for descending."),
]


@extend_schema_view(
    list=extend_schema(parameters=[COLLECTION_PARAMETER, *LIST_PARAMETERS]),
    create=extend_schema(parameters=[COLLECTION_PARAMETER]),
    retrieve=extend_schema(parameters=[COLLECTION_PARAMETER]),
    update=extend_schema(parameters=[COLLECTION_PARAMETER]),
    partial_update=extend_schema(parameters=[COLLECTION_PARAMETER]),
    destroy=extend_schema(parameters=[COLLECTION_PARAMETER]),
)
class RecordViewSet(viewsets.GenericViewSet):
    """Records of one collection, as flat objects; access rules apply to non-staff callers."""

    serializer_class = RecordSerializer
    filter_backends = [RecordFilterBackend]
    lookup_value_regex = "[^/]+"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.collection = self.load_collection()

    def load_collection(self) -> Collection:
        name = self.kwargs["collection_name"]
        collection = collection_by_name(name)
        if collection is None:
            raise Http404(f"Collection '{name}' not found.")
        return collection

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return Record.objects.none()
        return self.collection.records.all()

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if hasattr(self, "collection"):
            context.update(collection=self.collection, show_hidden=is_staff(self.request.user))
        return context

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        """The browsable API's form for this collection (writes are validated by the services)."""
        if not hasattr(self, "collection"):  # schema generation has no collection
            return RecordSerializer(*args, **kwargs)
        kwargs["context"] = self.get_serializer_context()
        return browsable.record_form_serializer(self.collection, *args, **kwargs)

    def get_view_name(self) -> str:
        kwargs = getattr(self, "kwargs", None) or {}
        if "collection_name" not in kwargs:
            return "Records"
        return browsable.page_title("record-detail" if "pk" in kwargs else "record-list", kwargs) or "Records"

    def get_view_description(self, html: bool = False) -> str:
        collection = getattr(self, "collection", None)
        if collection is None:
            return super().get_view_description(html)
        shown = [s for s in collection.field_specs if is_staff(self.request.user) or not s.hidden]
        fields = ", ".join(f"{s.name} ({s.type}{', required' if s.required else ''})" for s in shown)
        text = (
            f"Records of the {collection.name} collection. Fields: {fields or 'none yet'}. "
            'Filter with ?query= (e.g. title ~ "hello"), sort with ?ordering=-created.'
        )
        return formatting.markup_description(text) if html else text

    def values(self, request: Request, *, partial: bool) -> Any:
        """The body's record values; HTML form input (the browsable API) is typed per the schema."""
        return browsable.form_values(self.collection, request.data, partial=partial)

    def with_form(self, data: dict[str, Any], record: Record) -> Any:
        """The browsable API fills its update form from the serializer attached to the data."""
        if isinstance(getattr(self.request, "accepted_renderer", None), browsable.BrowsableAPIRenderer):
            return ReturnDict(data, serializer=self.get_serializer(instance=record))
        return data

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if response.status_code == status.HTTP_400_BAD_REQUEST:
            self.keep_posted_form(response)
        return response

    def keep_posted_form(self, response: Response) -> None:
        """A form post the API refused comes back with its form filled in as it was sent (the
        browsable API; JSON clients get the same errors, unchanged)."""
        if self.request.method not in ("POST", "PUT", "PATCH") or not hasattr(self, "collection"):
            return
        if not isinstance(getattr(self.request, "accepted_renderer", None), browsable.BrowsableAPIRenderer):
            return
        if not isinstance(response.data, dict):
            return
        try:
            posted = self.request.data
        except APIException:  # a body that cannot be read: there is no form to draw again
            return
        if isinstance(posted, QueryDict):
            context = {**self.get_serializer_context(), "refused": response.data}
            form = browsable.record_form_serializer(self.collection, data=posted, context=context)
            response.data = ReturnDict(response.data, serializer=form)

    def represent(self, record: Record) -> dict[str, Any]:
        return record_representation(record, self.collection.field_specs, show_hidden=is_staff(self.request.user))

    def get_record(self) -> Record:
        """The record of the URL, if the caller's view rule allows it (404 otherwise)."""
        try:
            record = self.get_queryset().get(pk=self.kwargs["pk"])
        except Record.DoesNotExist:
            raise Http404("Record not found.") from None
        view = rule_condition(self.collection, "view_rule", self.request.user)
        if view is None or not view.matches(record.as_dict()):
            raise Http404("Record not found.")
        return record

    def list(self, request: Request, collection_name: str) -> Response:
        rule = rule_condition(self.collection, "list_rule", request.user)
        if rule is None:
            raise PermissionDenied("Only staff may list this collection.")
        queryset = filters.filter_records(self.get_queryset(), rule)
        page = self.paginate_queryset(self.filter_queryset(queryset))
        return self.get_paginated_response([self.represent(record) for record in page])

    def retrieve(self, request: Request, collection_name: str, pk: str) -> Response:
        record = self.get_record()
        return Response(self.with_form(self.represent(record), record))

    def create(self, request: Request, collection_name: str) -> Response:
        data = self.values(request, partial=False)
        record = services.record_create(collection=self.collection, data=data, user=request.user)
        return Response(self.represent(record), status=status.HTTP_201_CREATED)

    def update(self, request: Request, collection_name: str, pk: str) -> Response:
        record = self.load_record()
        data = self.values(request, partial=False)
        record = services.record_update(record=record, data=data, user=request.user, partial=False)
        return Response(self.with_form(self.represent(record), record))

    def partial_update(self, request: Request, collection_name: str, pk: str) -> Response:
        record = self.load_record()
        data = self.values(request, partial=True)
        record = services.record_update(record=record, data=data, user=request.user, partial=True)
        return Response(self.with_form(self.represent(record), record))

    def destroy(self, request: Request, collection_name: str, pk: str) -> Response:
        services.record_delete(record=self.load_record(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def load_record(self) -> Record:
        """A handle on the URL's record; the service loads and locks it (404 when missing)."""
        return Record(pk=self.kwargs["pk"], collection=self.collection)


class TokenView(APIView):
    """Exchange a username and password for an API token."""

    permission_classes = [permissions.AllowAny]
    serializer_class = TokenRequestSerializer

    @extend_schema(
        request=openapi.CREDENTIALS,
        responses={
            200: openapi.TOKEN,
            400: OpenApiResponse(description="Unknown username or wrong password"),
            429: OpenApiResponse(description="Too many failed sign-in attempts (see the Retry-After header)"),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        throttles = login_throttles(request, username)
        refused = [throttle for throttle in throttles if not throttle.allow_request(request, self)]
        if refused:
            raise Throttled(
                wait=max(throttle.wait() or 0 for throttle in refused),
                detail="Too many failed sign-in attempts; try again later.",
            )
        user = authenticate(request._request, username=username, password=serializer.validated_data["password"])
        if user is None or not user.is_active:
            for throttle in throttles:
                throttle.record_failure()
            raise ValidationError({"non_field_errors": ["Unable to log in with the provided credentials."]})
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key, "user": user_summary(user)})
