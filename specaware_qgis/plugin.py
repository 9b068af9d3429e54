"""The plugin object QGIS loads: a toolbar button and a Raster-menu entry for the dock, and the Processing
provider."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .engine_process import Engine
from .processing.provider import SpecAwareProvider

MENU = "&SpecAware"
ICON = Path(__file__).with_name("icon.svg")
DOCK_WIDTH = 400  # px: the dock fits from 360 px (long names are elided, fields go below their labels)


class SpecAwarePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.dock = None
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name; also called by qgis_process
        if self.provider is None:
            self.provider = SpecAwareProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "SpecAware", self.iface.mainWindow())
        self.action.setObjectName("SpecAwareAction")
        self.action.setToolTip("SpecAware: classify, fine-tune and detect change in hyperspectral rasters")
        self.action.setCheckable(True)
        self.action.triggered.connect(self.toggle_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

    def toggle_dock(self, checked: bool = True) -> None:
        if self.dock is None:
            from .dock import SpecAwareDock
            self.dock = SpecAwareDock(self.iface.messageBar(), parent=self.iface.mainWindow(), iface=self.iface)
            self.dock.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            self.iface.mainWindow().resizeDocks([self.dock], [DOCK_WIDTH], Qt.Horizontal)
        self.dock.setUserVisible(checked)

    def unload(self) -> None:
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        Engine.shared().shutdown()
