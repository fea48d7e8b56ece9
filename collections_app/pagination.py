from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=&page_size=`: 30 by default, at most 500."""

    page_size = 30
    page_size_query_param = "page_size"
    max_page_size = 500
