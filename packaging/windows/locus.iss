; Inno Setup 6 script for the Locus installer on Windows (x64).
; packaging\windows\build.ps1 freezes the app into dist\locus and runs:
;   ISCC /DAppVersion=0.1.0 /DVariant=cpu /DSourceDir=...\dist\locus /DIconFile=...\build\icons\locus.ico locus.iss
; Start-menu entries (Locus, Locus Quick Ask), an optional desktop icon, an optional
; PATH entry for the `locus` command, and an uninstaller. Installs per user or for
; all users (the wizard asks); user data in %APPDATA%\Locus stays on uninstall.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef Variant
  #define Variant "cpu"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\locus"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\locus.ico"
#endif
#if Variant == "cpu"
  #define Suffix ""
#else
  #define Suffix "-" + Variant
#endif

[Setup]
AppId={{6F0C7E52-3B7A-4D52-9A1E-5C1B9D1E7A10}
AppName=Locus
AppVersion={#AppVersion}
AppVerName=Locus {#AppVersion}
AppPublisher=Locus developers
DefaultDirName={autopf}\Locus
DefaultGroupName=Locus
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=Locus{#Suffix}-{#AppVersion}-windows-x64-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\locus.exe
UninstallDisplayName=Locus {#AppVersion}
WizardStyle=modern
ChangesEnvironment=yes
; A gigabyte of mostly incompressible libraries: fast LZMA2 keeps the build in minutes.
Compression=lzma2/fast
SolidCompression=no
LZMANumBlockThreads=4
#if Variant != "cpu"
; The CUDA libraries push the installer past the 2 GB a single setup.exe may hold.
DiskSpanning=yes
DiskSliceSize=max
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the locus command to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Locus"; Filename: "{app}\locus.exe"; WorkingDir: "{userdocs}"
Name: "{group}\Locus Quick Ask"; Filename: "{app}\locus.exe"; Parameters: "--quick-ask"; WorkingDir: "{userdocs}"
Name: "{group}\{cm:UninstallProgram,Locus}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Locus"; Filename: "{app}\locus.exe"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Registry]
; PATH for this user or, in an all-users install, for the machine.
Root: HKA; Subkey: "{code:EnvironmentKey}"; ValueType: expandsz; ValueName: "Path"; \
  ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\locus.exe"; Description: "{cm:LaunchProgram,Locus}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"

[Code]
function EnvironmentKey(Param: String): String;
begin
  if IsAdminInstallMode then
    Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else
    Result := 'Environment';
end;

function NeedsAddPath(Dir: String): Boolean;
var
  Paths: String;
  RootKey: Integer;
begin
  if IsAdminInstallMode then RootKey := HKEY_LOCAL_MACHINE else RootKey := HKEY_CURRENT_USER;
  if not RegQueryStringValue(RootKey, EnvironmentKey(''), 'Path', Paths) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;

procedure RemovePath(Dir: String);
var
  Paths: String;
  RootKey, P: Integer;
begin
  if IsAdminInstallMode then RootKey := HKEY_LOCAL_MACHINE else RootKey := HKEY_CURRENT_USER;
  if not RegQueryStringValue(RootKey, EnvironmentKey(''), 'Path', Paths) then exit;
  { Where ";Dir;" starts in ";Paths;" is where Dir starts in Paths. }
  P := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';');
  if P = 0 then exit;
  if P = 1 then
    Delete(Paths, 1, Length(Dir) + 1)
  else
    Delete(Paths, P - 1, Length(Dir) + 1);
  RegWriteExpandStringValue(RootKey, EnvironmentKey(''), 'Path', Paths);
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemovePath(ExpandConstant('{app}'));
end;
