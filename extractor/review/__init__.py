"""`extractor review`: the page a person reads the morning after, for a job in any state from verified on."""

from extractor.review.page import write_review

__all__ = ["write_review"]
