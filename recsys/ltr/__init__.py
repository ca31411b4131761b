"""Learning to rank: candidates from several first stages, features of (request, candidate), a LightGBM ranker.

``recsys.ltr.sources`` (candidate sources and the merger), ``recsys.ltr.features`` (the one feature module),
``recsys.ltr.ranker`` (label scheme, LambdaRank, rating model, save/load), ``recsys.ltr.explain`` (reasons).
LightGBM is imported only when a ranker is fitted or loaded.
"""
