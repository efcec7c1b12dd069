/* A minimal PKCS#11 application, as host applications are written in C, used by the
 * system tests (signing.rs) to prove the module refuses C_Sign without a login.
 *   sign_after_logout MODULE SLOT PIN         log in, find the key, sign, log out, sign again
 *   sign_after_logout MODULE SLOT PIN hold    log in, print key=HANDLE and "holding", wait
 *                                             for EOF on stdin, sign again, exit
 *   sign_after_logout MODULE SLOT - other:H   another application: no login, sign with H
 * Prints "name=0xRV" lines. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;

static CK_ULONG find_private_keys(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *first)
{
    CK_OBJECT_CLASS class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &class, sizeof class}};
    CK_OBJECT_HANDLE found[16];
    CK_ULONG n = 0;
    CK_RV rv = p11->C_FindObjectsInit(h, tmpl, 1);
    printf("find_init=0x%lx\n", (unsigned long)rv);
    if (rv != CKR_OK)
        return 0;
    rv = p11->C_FindObjects(h, found, 16, &n);
    printf("find=0x%lx\n", (unsigned long)rv);
    p11->C_FindObjectsFinal(h);
    if (n > 0 && first)
        *first = found[0];
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s MODULE SLOT PIN [hold|other:HANDLE]\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!get_list || get_list(&p11) != CKR_OK) {
        fprintf(stderr, "C_GetFunctionList failed\n");
        return 2;
    }
    CK_SLOT_ID slot = strtoul(argv[2], NULL, 10);
    CK_RV rv = p11->C_Initialize(NULL);
    printf("initialize=0x%lx\n", (unsigned long)rv);
    CK_SESSION_HANDLE h;
    rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
    printf("open_session=0x%lx\n", (unsigned long)rv);
    if (rv != CKR_OK)
        return 1;

    CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_BYTE data[] = "sign me";
    CK_BYTE sig[512];
    CK_ULONG sig_len = sizeof sig;

    if (argc == 5 && strncmp(argv[4], "other:", 6) == 0) {
        /* Another application that never logged in, using a handle it was told. */
        CK_OBJECT_HANDLE other = strtoul(argv[4] + 6, NULL, 10);
        rv = p11->C_SignInit(h, &mech, other);
        printf("sign_init_other_app=0x%lx\n", (unsigned long)rv);
        if (rv == CKR_OK) {
            rv = p11->C_Sign(h, data, sizeof data - 1, sig, &sig_len);
            printf("sign_other_app=0x%lx\n", (unsigned long)rv);
        }
        p11->C_Finalize(NULL);
        return 0;
    }

    printf("private_keys_before_login=%lu\n", find_private_keys(h, NULL));
    rv = p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3]));
    printf("login=0x%lx\n", (unsigned long)rv);
    CK_OBJECT_HANDLE key = 0;
    printf("private_keys_after_login=%lu\n", find_private_keys(h, &key));

    if (argc == 5 && strcmp(argv[4], "hold") == 0) {
        printf("key=%lu\nholding\n", (unsigned long)key);
        fflush(stdout);
        while (getchar() != EOF)
            ;
        rv = p11->C_SignInit(h, &mech, key);
        if (rv == CKR_OK)
            rv = p11->C_Sign(h, data, sizeof data - 1, sig, &sig_len);
        printf("sign_after_hold=0x%lx\n", (unsigned long)rv);
        p11->C_Finalize(NULL);
        return 0;
    }

    /* Logged in: the key signs (so the refusal below is about the login). */
    rv = p11->C_SignInit(h, &mech, key);
    printf("sign_init_logged_in=0x%lx\n", (unsigned long)rv);
    if (rv == CKR_OK) {
        rv = p11->C_Sign(h, data, sizeof data - 1, sig, &sig_len);
        printf("sign_logged_in=0x%lx len=%lu\n", (unsigned long)rv, (unsigned long)sig_len);
    }

    rv = p11->C_Logout(h);
    printf("logout=0x%lx\n", (unsigned long)rv);
    sig_len = sizeof sig;
    rv = p11->C_SignInit(h, &mech, key);
    printf("sign_init_logged_out=0x%lx\n", (unsigned long)rv);
    if (rv == CKR_OK) {
        rv = p11->C_Sign(h, data, sizeof data - 1, sig, &sig_len);
        printf("sign_logged_out=0x%lx\n", (unsigned long)rv);
    }
    p11->C_CloseSession(h);
    p11->C_Finalize(NULL);
    return 0;
}
