"""``s2sr review``: a local web page for reviewing a paired dataset's patches by hand.

:class:`ReviewServer` serves one dataset on ``127.0.0.1``; :class:`Catalog` is the
dataset as the page sees it (filters, sorting, pages, histograms, decisions through the
dataset's :class:`~s2sr.data.store.PairStore`); :class:`Thumbnails` renders the patch
images. Needs the ``review`` extra (``pip install 's2sr[review]'``: Starlette, uvicorn).
"""

from s2sr.review.catalog import Catalog, Query
from s2sr.review.server import ReviewServer
from s2sr.review.thumbs import Thumbnails

__all__ = ["Catalog", "Query", "ReviewServer", "Thumbnails"]
