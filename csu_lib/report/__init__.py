"""The figure report: ``figures/index.html`` (:func:`write_report`) and the manifest of what made
the figures (:func:`record_notebook`, written by ``csu figures``), and the README gallery (:func:`write_gallery`);
how a figure is written (:mod:`.figure_files`: :func:`save_figure`, :func:`save_numbers`, :func:`save_plotly`) and
its JSON laid out (:mod:`.figure_numbers`, one function per figure in :data:`FIGURE_NUMBERS`)."""
from . import figure_numbers
from .catalog import CATALOG, FigureEntry, key_numbers
from .figure_files import runs_behind, save_figure, save_numbers, save_plotly
from .figure_numbers import FIGURE_NUMBERS
from .gallery import GALLERY, shrink_png, write_gallery
from .manifest import environment, figures_since, load_manifest, record_notebook
from .page import figure_names, write_report

__all__ = ["CATALOG", "FIGURE_NUMBERS", "FigureEntry", "GALLERY", "environment", "figure_names", "figure_numbers",
           "figures_since", "key_numbers", "load_manifest", "record_notebook", "runs_behind", "save_figure", "save_numbers",
           "save_plotly", "shrink_png", "write_gallery", "write_report"]
