"""``GET /items/{item_id}``: an item's fields from the dataset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam
from fastapi.encoders import jsonable_encoder

from recsys.data import schema as S
from recsys.serving.dependencies import current_service
from recsys.serving.inputs import finite, parse_id
from recsys.serving.schemas import ERRORS, ItemResponse
from recsys.serving.state import Loaded

router = APIRouter(tags=["items"])


@router.get("/items/{item_id}", response_model=ItemResponse, responses=ERRORS)
def get_item(
    item_id: Annotated[str, PathParam(description="An item id (integer or string, as the dataset's ids).")],
    loaded: Annotated[Loaded, Depends(current_service)],
) -> ItemResponse:
    """The item's fields from the dataset."""
    iid = parse_id(item_id, loaded.item_dtype, "item")
    row = loaded.item_rows.get(iid)
    in_index = iid in loaded.service.index
    if row is None:
        if not in_index:
            raise HTTPException(404, f"unknown item {iid!r}")
        title = loaded.service._titles.get(iid)  # an item added to the index after the dataset
        return ItemResponse(item_id=iid, fields={"title": title} if title is not None else {}, in_index=True)
    fields = loaded.service.dataset.items.row(row, named=True)
    fields.pop(S.ITEM_ID, None)
    return ItemResponse(item_id=iid, fields=finite(jsonable_encoder(fields)), in_index=in_index)
