# Build the Locus installer for Windows (x64):
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Variant cpu|cuda]
#
# Needs .venv with Locus and its dependencies (README, "Windows"); for -Variant cuda,
# CUDA builds of torch and llama-cpp-python in it. Freezes the app with the same
# PyInstaller spec as Linux (dist\locus), checks that `locus.exe --version` runs,
# then compiles packaging\windows\locus.iss with Inno Setup 6 into
# dist\Locus[-cuda]-<version>-windows-x64-setup.exe.
param([ValidateSet("cpu", "cuda")][string]$Variant = "cpu")
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $Root
$Py = Join-Path $Root ".venv\Scripts\python.exe"
if (-not (Test-Path $Py)) { throw "No .venv here: create it first (README, Windows)." }

function Invoke-Checked([string]$What, [scriptblock]$Block) {
    & $Block
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)." }
}

$Version = (& $Py -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])").Trim()
Invoke-Checked "Installing PyInstaller" { & $Py -m pip install -q -e ".[package]" }

$env:LOCUS_BUILD_VARIANT = $Variant
$env:QT_QPA_PLATFORM = "offscreen"
Invoke-Checked "Rendering icons" { & $Py packaging\render_icons.py build\icons }
Remove-Item Env:QT_QPA_PLATFORM
Invoke-Checked "PyInstaller" {
    & $Py -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build\pyinstaller packaging\locus.spec
}

$Got = (& dist\locus\locus.exe --version | Out-String).Trim()
if ($Got -ne "locus $Version") { throw "The frozen app says '$Got', expected 'locus $Version'." }

$Iscc = Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe"
if (-not (Test-Path $Iscc)) { throw "Inno Setup 6 is not installed (choco install innosetup)." }
Invoke-Checked "Inno Setup" {
    & $Iscc /Q "/DAppVersion=$Version" "/DVariant=$Variant" "/DSourceDir=$Root\dist\locus" `
        "/DIconFile=$Root\build\icons\locus.ico" packaging\windows\locus.iss
}
Get-ChildItem dist\Locus*-setup*.exe, dist\Locus*-setup*.bin -ErrorAction SilentlyContinue |
    ForEach-Object { "{0}  {1:N0} MiB" -f $_.Name, ($_.Length / 1MB) }
